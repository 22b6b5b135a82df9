"""RGB images [n, H, W, 3] (NSD's stimuli) through every fmri_eval entry point, scored as the NSD literature
scores them: pixel correlation over the three channels, SSIM on luminance."""

import json

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from fmri_eval import EvaluationError, image_metrics, literature_table, load_reconstructions, write_run
from fmri_eval.literature_table import EVAL_SIZE, resize_for_table
from fmri_eval.settings import EvaluationSettings


@pytest.fixture
def colour():
    rng = np.random.default_rng(0)
    truth = rng.random((5, 16, 16, 3))
    return truth, {
        "close": np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1),
        "noise": rng.random(truth.shape),
    }


def test_pixel_scores_span_the_channels_and_ssim_reads_luminance(colour):
    truth, reconstructions = colour
    recon = reconstructions["close"]
    scores = image_metrics(truth, recon)
    for i in range(len(truth)):
        assert scores["pcc"][i] == pytest.approx(np.corrcoef(truth[i].ravel(), recon[i].ravel())[0, 1])
        assert scores["mse"][i] == pytest.approx(np.mean((truth[i] - recon[i]) ** 2))
        luminance = structural_similarity(
            rgb2gray(truth[i]),
            rgb2gray(recon[i]),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert scores["ssim"][i] == pytest.approx(luminance)


def test_a_hue_swap_costs_pixel_correlation_not_only_luminance():
    rng = np.random.default_rng(1)
    truth = rng.random((3, 16, 16, 3))
    swapped = truth[..., ::-1]  # red and blue exchanged: another image in colour
    scores = image_metrics(truth, swapped)
    assert np.all(scores["pcc"] < 0.9)
    assert np.all(image_metrics(truth, truth)["pcc"] == pytest.approx(1.0))


@pytest.mark.parametrize("shape", [(2, 8, 8, 4), (2, 8, 8, 1), (2, 3, 8, 8, 3)])
def test_other_channel_layouts_are_refused_in_one_line(shape):
    images = np.zeros(shape)
    with pytest.raises(EvaluationError, match=r"\[n, H, W, 3\]") as info:
        image_metrics(images, images)
    assert "\n" not in str(info.value)


def test_colour_and_grayscale_do_not_pair():
    with pytest.raises(EvaluationError, match="but truth has"):
        image_metrics(np.zeros((2, 12, 12, 3)), np.zeros((2, 12, 12)))


def test_the_literature_table_keeps_colour_at_its_size_and_says_so(colour):
    truth, reconstructions = colour
    assert resize_for_table(truth).shape == (len(truth), EVAL_SIZE, EVAL_SIZE, 3)
    table, notes = literature_table(truth, reconstructions, n_boot=50)
    assert table["close"]["pixcorr"] > table["noise"]["pixcorr"] + 0.3
    assert table["close"]["ssim"] > table["noise"]["ssim"]
    assert notes[0].startswith("images: colour stimuli at 16x16")


def test_a_colour_run_round_trips_through_its_file_report_and_figure(tmp_path, colour):
    truth, reconstructions = colour
    rng = np.random.default_rng(2)
    methods = {
        "ridge": reconstructions["noise"],
        "close": reconstructions["close"],
        "mean": rng.random(truth.shape),
    }
    out = tmp_path / "run"
    write_run(
        out,
        dataset="toy-rgb",
        split="given",
        truth=truth,
        stimulus_id=np.arange(len(truth)),
        reconstructions=methods,
        settings=EvaluationSettings(n_boot=50, baseline="ridge"),
        literature=True,
    )
    loaded = load_reconstructions(out / "reconstructions.npz")
    np.testing.assert_array_equal(loaded.truth, truth)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"]["close"]["pcc"] > metrics["methods"]["ridge"]["pcc"]
    assert "colour stimuli" in (out / "report.md").read_text()
    assert (out / "reconstructions.png").stat().st_size > 0
