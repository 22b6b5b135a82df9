"""Reports, figures, atomic output folders and write_run."""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from fmri_eval import (
    EvaluationError,
    atomic_output_dir,
    load_reconstructions,
    markdown_table,
    reconstruction_grid,
    training_curve,
    write_report,
    write_run,
)


@pytest.fixture
def run_inputs():
    rng = np.random.default_rng(0)
    truth = rng.random((5, 12, 12))
    methods = {"ridge": rng.random(truth.shape), "ddpm-1": np.clip(truth + 0.1, 0, 1)}
    return truth, methods, np.array([0, 0, 1, 2, 3])


def leftovers(parent, name):
    return [path.name for path in parent.iterdir() if path.name != name]


def fail_while_writing(out_dir):
    with atomic_output_dir(out_dir) as staging:
        (staging / "partial.txt").write_text("partial")
        raise RuntimeError("boom")


def test_markdown_table_formats_mean_and_ci():
    table = markdown_table(
        {"ridge": {"pcc": 0.7912, "pcc_ci": [0.75, 0.83], "mse": 0.00897, "mse_ci": [0.00847, 0.00943]}},
        metrics=("pcc", "mse", "ssim"),
    )
    lines = table.splitlines()
    assert lines[0] == "| method | PCC ↑ | MSE ↓ | SSIM ↑ |"
    assert lines[2] == "| ridge | 0.791 [0.750, 0.830] | 0.00897 [0.00847, 0.00943] | n/a |"


def test_write_report_contents(tmp_path):
    path = write_report(
        tmp_path / "report.md",
        dataset="nsd",
        split="test",
        n_test=982,
        metrics_by_method={"ridge": {"pcc": 0.5, "pcc_ci": [0.4, 0.6]}},
        figure="reconstructions.png",
        notes=["test repeats averaged"],
        command="fmri-eval run.npz",
    )
    text = path.read_text()
    for expected in ["nsd", "test", "982", "- test repeats averaged", "| ridge |", "![reconstructions]("]:
        assert expected in text
    assert "```\nfmri-eval run.npz\n```" in text


def test_atomic_output_dir_success(tmp_path):
    out = tmp_path / "run"
    with atomic_output_dir(out) as staging:
        assert staging.parent == tmp_path
        assert not out.exists()
        (staging / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    assert leftovers(tmp_path, "run") == []


def test_atomic_output_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        fail_while_writing(out)
    assert not out.exists()
    assert leftovers(tmp_path, "run") == []


def test_existing_folder_is_replaced_only_on_success(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        fail_while_writing(out)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    with atomic_output_dir(out) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert leftovers(tmp_path, "run") == []


def test_atomic_output_dir_refuses_a_file(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(EvaluationError, match="not a folder"), atomic_output_dir(tmp_path / "run"):
        pass


def test_write_run_writes_four_files(tmp_path, run_inputs):
    truth, methods, stimulus_id = run_inputs
    out = tmp_path / "runs" / "subj01"
    result = write_run(
        out,
        dataset="nsd",
        split="test",
        truth=truth,
        stimulus_id=stimulus_id,
        reconstructions=methods,
        trial_index=np.arange(5),
        notes=["averaged over repeats"],
        command="python train.py",
        extra={"subject": 1},
        n_boot=100,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "reconstructions.npz",
        "reconstructions.png",
        "report.md",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result
    assert list(metrics) == ["dataset", "split", "n_test", "methods", "notes", "subject"]
    assert (metrics["dataset"], metrics["split"], metrics["n_test"]) == ("nsd", "test", 5)
    assert metrics["notes"] == ["averaged over repeats"]
    assert list(metrics["methods"]) == ["ridge", "ddpm-1"]
    for key in ["pcc", "ssim", "mse", "psnr", "twoway"]:
        assert isinstance(metrics["methods"]["ridge"][key], float)
        assert len(metrics["methods"]["ridge"][f"{key}_ci"]) == 2
    saved = load_reconstructions(out / "reconstructions.npz")
    np.testing.assert_array_equal(saved.reconstructions["ddpm-1"], methods["ddpm-1"])
    np.testing.assert_array_equal(saved.trial_index, np.arange(5))
    report = (out / "report.md").read_text()
    assert "| ddpm-1 |" in report
    assert "python train.py" in report
    assert imread(out / "reconstructions.png").ndim == 3


def test_write_run_failure_keeps_previous_run(tmp_path, run_inputs):
    truth, methods, stimulus_id = run_inputs
    out = tmp_path / "run"
    kwargs = {"dataset": "nsd", "split": "test", "truth": truth, "stimulus_id": stimulus_id, "n_boot": 50}
    write_run(out, reconstructions=methods, **kwargs)
    before = (out / "metrics.json").read_text()
    with pytest.raises(EvaluationError, match="invalid method name"):
        write_run(out, reconstructions={**methods, "a/b": truth}, **kwargs)
    with pytest.raises(EvaluationError, match="clash"):
        write_run(out, reconstructions=methods, extra={"methods": 1}, **kwargs)
    with pytest.raises(EvaluationError, match="JSON"):
        write_run(out, reconstructions=methods, extra={"array": np.zeros(2)}, **kwargs)
    assert (out / "metrics.json").read_text() == before
    assert leftovers(tmp_path, "run") == []


def test_reconstruction_grid_has_a_row_per_method(tmp_path, run_inputs):
    truth, methods, _ = run_inputs
    one = imread(reconstruction_grid(tmp_path / "one.png", truth, {"ridge": methods["ridge"]}))
    two = imread(reconstruction_grid(tmp_path / "two.png", truth, methods))
    capped = imread(reconstruction_grid(tmp_path / "capped.png", truth, methods, max_images=2))
    assert two.shape[0] > one.shape[0]
    assert capped.shape[1] < two.shape[1]
    with pytest.raises(EvaluationError, match="'ridge'"):
        reconstruction_grid(tmp_path / "bad.png", truth, {"ridge": truth[:2]})


def test_training_curve(tmp_path):
    path = training_curve(tmp_path / "curve.png", [0, 10, 20], [1.0, 0.5, np.nan], log_y=True)
    assert imread(path).shape[2] in (3, 4)
    with pytest.raises(EvaluationError, match="equal-length"):
        training_curve(tmp_path / "bad.png", [0, 1], [1.0])
