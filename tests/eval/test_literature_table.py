"""The NSD literature's 8-metric table on constructed images and features (no torch)."""

import importlib
import json

import numpy as np
import pytest

from fmri_eval import (
    TABLE_COLUMNS,
    EvaluationSettings,
    bootstrap_ci,
    correlation_distance,
    literature_table,
    write_run,
)
from fmri_eval.literature_table import EVAL_SIZE, item_scores, pixel_scores, resize_for_table
from fmri_eval.metrics import pcc, ssim


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    truth = rng.random((6, 16, 16))
    return truth, {"perfect": truth.copy(), "noise": rng.random(truth.shape)}


def features_of(images: np.ndarray) -> dict[str, np.ndarray]:
    """Constructed 'features': a fixed random projection of the pixels, one per column."""
    flat = images.reshape(len(images), -1)
    rng = np.random.default_rng(1)
    return {name: flat @ rng.standard_normal((flat.shape[1], 20)) for name in TABLE_COLUMNS[2:]}


def test_resize_goes_to_the_literature_size():
    assert resize_for_table(np.zeros((2, 28, 28))).shape == (2, EVAL_SIZE, EVAL_SIZE)


def test_correlation_distance_is_zero_for_equal_and_two_for_opposite_features():
    features = np.random.default_rng(0).standard_normal((3, 10))
    np.testing.assert_allclose(correlation_distance(features, features), 0, atol=1e-12)
    np.testing.assert_allclose(correlation_distance(features, -features), 2, atol=1e-12)


def test_perfect_reconstructions_top_every_column(images):
    truth, reconstructions = images
    table, notes = literature_table(truth, reconstructions, features_of, n_boot=50)
    perfect, noise = table["perfect"], table["noise"]
    assert [note.split(":")[0] for note in notes] == ["images"]  # the protocol note alone
    for column in ("pixcorr", "ssim", "alexnet2", "alexnet5", "inception", "clip"):
        assert perfect[column] == pytest.approx(1.0)
        assert noise[column] < 0.9
    for column in ("effnet", "swav"):  # distances: lower is better
        assert perfect[column] == pytest.approx(0.0, abs=1e-9)
        assert noise[column] > 0.1
    low, high = noise["pixcorr_ci"]
    assert low <= noise["pixcorr"] <= high


def test_twoway_leaves_out_same_stimulus_competitors(images):
    truth, _ = images
    truth = np.concatenate([truth[:3], truth[:3]])  # every stimulus shown twice
    recon = truth[[3, 4, 5, 0, 1, 2]]  # each trial gets its repeat's image: the same picture
    table, _ = literature_table(truth, {"repeat": recon}, features_of, np.array([0, 1, 2, 0, 1, 2]))
    assert table["repeat"]["clip"] == 1.0


def test_intervals_resample_stimuli_where_they_repeat(images):
    truth, reconstructions = images
    ids = np.array([0, 0, 0, 1, 1, 2])
    table, _ = literature_table(truth, reconstructions, features_of, ids, n_boot=80, seed=2)
    per_trial = literature_table(truth, reconstructions, features_of, n_boot=80, seed=2)[0]
    # The same per-trial values, another resampling unit: equal means, different intervals.
    assert table["noise"]["pixcorr"] == pytest.approx(per_trial["noise"]["pixcorr"])
    assert table["noise"]["pixcorr_ci"] != per_trial["noise"]["pixcorr_ci"]
    scores = item_scores(truth, reconstructions["noise"], features_of(truth), {}, ids)
    _, low, high = bootstrap_ci(scores["pixcorr"], n_boot=80, seed=2, clusters=ids)
    assert table["noise"]["pixcorr_ci"] == [low, high]


def test_missing_feature_models_are_left_out_with_a_note(images):
    truth, reconstructions = images
    partial = lambda x: {"alexnet2": features_of(x)["alexnet2"]}  # noqa: E731
    table, notes = literature_table(truth, reconstructions, partial, n_boot=50)
    assert set(table["noise"]) == {"pixcorr", "ssim", "alexnet2"} | {
        f"{c}_ci" for c in ("pixcorr", "ssim", "alexnet2")
    }
    assert len(notes) == 2
    assert "alexnet5, inception, clip, effnet, swav" in notes[1]
    table, notes = literature_table(truth, reconstructions, None, n_boot=50)
    assert "--feature-weights" in notes[1]
    assert "clip" not in table["noise"]


def test_write_run_adds_the_table_to_metrics_and_report(tmp_path, images):
    truth, reconstructions = images
    metrics = write_run(
        tmp_path / "run",
        dataset="d",
        split="given",
        truth=truth,
        stimulus_id=np.arange(len(truth)),
        reconstructions=reconstructions,
        settings=EvaluationSettings(n_boot=50),
        literature=True,
        extract_features=features_of,
    )
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (
        saved["literature"]["methods"]["perfect"]["clip"]
        == metrics["literature"]["methods"]["perfect"]["clip"]
    )
    report = (tmp_path / "run" / "report.md").read_text()
    assert "NSD literature metrics" in report
    assert "SwAV ↓" in report
    assert "AlexNet(5) ↑" in report


@pytest.mark.parametrize("channels", [(), (3,)])
def test_pixel_columns_score_chunk_by_chunk_as_all_at_once(monkeypatch, channels):
    rng = np.random.default_rng(3)
    truth, recon = rng.random((2, 5, 12, 12, *channels))
    module = importlib.import_module("fmri_eval.literature_table")  # the package exports its function
    monkeypatch.setattr(module, "PIXEL_CHUNK", 2)
    scores = pixel_scores(truth, recon)
    big_truth, big_recon = resize_for_table(truth), resize_for_table(recon)
    np.testing.assert_allclose(scores["pixcorr"], pcc(big_truth, big_recon))
    np.testing.assert_allclose(scores["ssim"], ssim(big_truth, big_recon))
