"""Reports, figures, atomic output folders and write_run."""

import json
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from fmri_eval import (
    EvaluationError,
    EvaluationSettings,
    atomic_output_dir,
    difference_table,
    evaluate_run,
    load_reconstructions,
    markdown_table,
    reconstruction_grid,
    terminal_table,
    training_curve,
    write_report,
    write_run,
)
from fmri_eval.run import check_run_folder


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


def scored_run(methods, baseline=None, unit="stimulus", repeats_averaged=False):
    return {
        "n_test": 119,
        "n_stimuli": 20,
        "repeats_averaged": repeats_averaged,
        "ci": {"level": 0.95, "unit": unit, "n_boot": 2000, "seed": 0},
        "baseline": baseline,
        "methods": methods,
    }


def difference(delta, low, high, p):
    return {"delta": delta, "ci": [low, high], "p": p}


def test_write_report_contents(tmp_path):
    path = write_report(
        tmp_path / "report.md",
        dataset="nsd",
        split="test",
        scored=scored_run({"ridge": {"pcc": 0.5, "pcc_ci": [0.4, 0.6]}}, repeats_averaged=True),
        figure="reconstructions.png",
        notes=["a note"],
        command="fmri-eval run.npz",
    )
    text = path.read_text()
    for expected in ["nsd", "test", "- a note", "| ridge |", "![reconstructions]("]:
        assert expected in text
    assert "- test set: 119 test trials, 20 distinct test stimuli, repeats averaged before decoding\n" in text
    assert (
        "bootstrap CI resampling test stimuli (all trials of a drawn stimulus together), 2000 resamples"
        in text
    )
    assert "```\nfmri-eval run.npz\n```" in text
    assert "Difference from" not in text


def test_report_has_a_difference_table_marking_intervals_that_exclude_zero(tmp_path):
    pcc = {"pcc": 0.8, "pcc_ci": [0.7, 0.9]}
    methods = {
        "mean": pcc | {"vs_baseline": {"pcc": difference(-0.2, -0.25, -0.15, 0.0005)}},
        "ridge": pcc,
        "mlp": pcc | {"vs_baseline": {"pcc": difference(0.01, -0.01, 0.03, 0.4)}},
    }
    table = difference_table(methods, metrics=["pcc"])
    assert table.splitlines()[0] == "| method | Δ PCC ↑ |"
    assert table.splitlines()[2] == "| mean | **-0.200 [-0.250, -0.150]** p<0.001 |"
    assert table.splitlines()[3] == "| mlp | +0.0100 [-0.0100, +0.0300] p=0.400 |"
    assert len(table.splitlines()) == 4  # the baseline has no row
    text = write_report(
        tmp_path / "report.md", dataset="d", split="loso", scored=scored_run(methods, baseline="ridge")
    ).read_text()
    assert "## Difference from ridge" in text
    assert "test trials, 20 distinct test stimuli, repeats not averaged" in text


def test_terminal_table_fits_100_columns_and_marks_differences():
    cell = {"pcc": -0.123, "pcc_ci": [-0.456, -0.001], "ssim": 0.5, "ssim_ci": [0.4, 0.6]}
    cell |= {"twoway": 0.95, "twoway_ci": [0.9, 1.0]}
    differences = {
        "pcc": difference(0.05, 0.01, 0.09, 0.01),
        "ssim": difference(-0.05, -0.09, -0.01, 0.01),
        "twoway": difference(0.01, -0.02, 0.04, 0.5),
    }
    long_name = "brain-diffuser-stage1-with-a-name-far-too-long-for-any-terminal-table"
    methods = {"ridge": cell, "mlp": cell | {"vs_baseline": differences}, long_name: cell}
    text = terminal_table(scored_run(methods, baseline="ridge"))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == ["method", "pcc", "ssim", "2-way"]
    mlp_row = " ".join(lines[2].split())
    assert mlp_row == "mlp -0.123 [-0.456, -0.001] + 0.500 [0.400, 0.600] - 0.950 [0.900, 1.000]"
    assert lines[3].split()[0] == "brain-diffu…minal-table"
    assert "resample test stimuli (119 trials, 20 stimuli, 2000 resamples)" in " ".join(lines[4:])
    assert "better/worse than ridge" in " ".join(lines[4:])
    twins = {
        "a-rather-long-method-name-that-needs-cutting-" + suffix: cell for suffix in ("steps-1", "steps-2")
    }
    rows = terminal_table(scored_run(twins)).splitlines()[1:3]
    assert [row.split()[0] for row in rows] == ["a-rather-lo…ing-steps-1", "a-rather-lo…ing-steps-2"]
    without = terminal_table(scored_run({"mean": cell}, unit="trial"))
    assert "resample test trials" in without
    assert "better/worse" not in without


def test_report_and_terminal_table_render_a_real_evaluation(run_inputs):
    truth, methods, stimulus_id = run_inputs
    scored = evaluate_run(truth, methods, stimulus_id, EvaluationSettings(n_boot=50, baseline="ridge"))
    assert "| ddpm-1 |" in difference_table(scored["methods"])
    assert max(len(line) for line in terminal_table(scored).splitlines()) <= 100


def test_importing_the_package_loads_no_figure_stack():
    code = "import sys, fmri_eval, fmri_eval.atomic; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


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
        settings=EvaluationSettings(n_boot=100, seed=2, baseline="ridge", repeats_averaged=True),
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "reconstructions.npz",
        "reconstructions.png",
        "report.md",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result
    assert list(metrics) == [
        "dataset",
        "split",
        "n_test",
        "n_stimuli",
        "repeats_averaged",
        "ci",
        "baseline",
        "methods",
        "notes",
        "software",
        "subject",
    ]
    assert set(metrics["software"]) == {"fmri_eval", "numpy", "scikit_image"}
    assert (metrics["dataset"], metrics["split"], metrics["n_test"], metrics["n_stimuli"]) == (
        "nsd",
        "test",
        5,
        4,
    )
    assert metrics["ci"] == {"level": 0.95, "unit": "stimulus", "n_boot": 100, "seed": 2}
    assert (metrics["baseline"], metrics["repeats_averaged"]) == ("ridge", True)
    assert set(metrics["methods"]["ddpm-1"]["vs_baseline"]) == {"pcc", "ssim", "mse", "psnr", "twoway"}
    assert metrics["notes"] == ["averaged over repeats"]
    assert list(metrics["methods"]) == ["ridge", "ddpm-1"]
    for key in ["pcc", "ssim", "mse", "psnr", "twoway"]:
        assert isinstance(metrics["methods"]["ridge"][key], float)
        assert len(metrics["methods"]["ridge"][f"{key}_ci"]) == 2
    saved = load_reconstructions(out / "reconstructions.npz")
    assert saved.settings == EvaluationSettings(n_boot=100, seed=2, baseline="ridge", repeats_averaged=True)
    np.testing.assert_array_equal(saved.reconstructions["ddpm-1"], methods["ddpm-1"])
    np.testing.assert_array_equal(saved.trial_index, np.arange(5))
    report = (out / "report.md").read_text()
    assert "| ddpm-1 |" in report
    assert "## Difference from ridge" in report
    assert "python train.py" in report
    assert imread(out / "reconstructions.png").ndim == 3


def test_write_run_failure_keeps_previous_run(tmp_path, run_inputs):
    truth, methods, stimulus_id = run_inputs
    out = tmp_path / "run"
    kwargs = {"dataset": "nsd", "split": "test", "truth": truth, "stimulus_id": stimulus_id}
    kwargs["settings"] = EvaluationSettings(n_boot=50)
    write_run(out, reconstructions=methods, **kwargs)
    before = (out / "metrics.json").read_text()
    with pytest.raises(EvaluationError, match="invalid method name"):
        write_run(out, reconstructions={**methods, "a/b": truth}, **kwargs)
    with pytest.raises(EvaluationError, match="clash"):
        write_run(out, reconstructions=methods, extra={"methods": 1}, **kwargs)
    with pytest.raises(EvaluationError, match="JSON"):
        write_run(out, reconstructions=methods, extra={"array": np.zeros(2)}, **kwargs)
    kwargs["settings"] = EvaluationSettings(n_boot=50, baseline="mean")
    with pytest.raises(EvaluationError, match="baseline 'mean' is not among"):
        write_run(out, reconstructions=methods, **kwargs)
    assert (out / "metrics.json").read_text() == before
    assert leftovers(tmp_path, "run") == []


def test_check_run_folder_takes_a_new_empty_or_earlier_run_folder_only(tmp_path, run_inputs):
    truth, methods, stimulus_id = run_inputs
    (tmp_path / "other-run").mkdir()
    (tmp_path / "metrics.json").write_text("{}")  # fmri_ldm's report writes one beside its model
    with pytest.raises(EvaluationError, match=r"holds files but not an earlier run \(metrics\.json and"):
        check_run_folder(tmp_path)
    check_run_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_run_folder(tmp_path / "empty")
    kwargs = {"dataset": "nsd", "split": "test", "truth": truth, "stimulus_id": stimulus_id}
    write_run(tmp_path / "empty", reconstructions=methods, settings=EvaluationSettings(n_boot=20), **kwargs)
    check_run_folder(tmp_path / "empty")  # an earlier run: replaced by the next


def test_check_run_folder_refuses_an_output_folder_holding_the_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(EvaluationError, match=r"--work-dir .*work is inside --out .*out, which the run"):
        check_run_folder(out, "--out", keep={"--work-dir": out / "work", "--cache-dir": None})
    with pytest.raises(EvaluationError, match="--cache-dir"):
        check_run_folder(out, "--out", keep={"--cache-dir": out})
    check_run_folder(out, "--out", keep={"--work-dir": tmp_path / "out-work"})  # side by side


def test_reconstruction_grid_has_a_row_per_method(tmp_path, run_inputs):
    truth, methods, _ = run_inputs
    one = imread(reconstruction_grid(tmp_path / "one.png", truth, {"ridge": methods["ridge"]}))
    two = imread(reconstruction_grid(tmp_path / "two.png", truth, methods))
    capped = imread(reconstruction_grid(tmp_path / "capped.png", truth, methods, max_images=2))
    assert two.shape[0] > one.shape[0]
    assert capped.shape[1] < two.shape[1]
    with pytest.raises(EvaluationError, match="'ridge'"):
        reconstruction_grid(tmp_path / "bad.png", truth, {"ridge": truth[:2]})


def test_method_columns_has_a_column_per_method_and_rows_per_data_set(tmp_path, run_inputs):
    from fmri_eval.figures import method_columns

    truth, methods, _ = run_inputs
    one = imread(method_columns(tmp_path / "one.png", {"a": (truth, {"ridge": methods["ridge"]})}))
    wide = imread(method_columns(tmp_path / "wide.png", {"a": (truth, methods)}))
    tall = imread(
        method_columns(
            tmp_path / "tall.png", {"a": (truth, methods), "b": (truth, {"ridge": methods["ridge"]})}
        )
    )
    assert wide.shape[1] > one.shape[1]
    assert tall.shape[0] > wide.shape[0]
    with pytest.raises(EvaluationError, match="a: ridge"):
        method_columns(tmp_path / "bad.png", {"a": (truth, {"ridge": truth[:2]})})
    long_last = {"ridge": methods["ridge"], "a-method-with-a-long-name": methods["ridge"]}
    edge = imread(method_columns(tmp_path / "long.png", {"a": (truth, long_last)}))[:, -1, :3]
    assert edge.min() == edge.max(), "the last column's title is cut at the figure's right edge"
    with pytest.raises(EvaluationError, match="n_images"):
        method_columns(tmp_path / "bad.png", {"a": (truth, methods)}, n_images=0)


def test_training_curve(tmp_path):
    path = training_curve(tmp_path / "curve.png", [0, 10, 20], [1.0, 0.5, np.nan], log_y=True)
    assert imread(path).shape[2] in (3, 4)
    with pytest.raises(EvaluationError, match="equal-length"):
        training_curve(tmp_path / "bad.png", [0, 1], [1.0])


def test_score_run_is_what_write_run_writes_and_writes_nothing(tmp_path, monkeypatch):
    from fmri_eval import score_run, write_run

    rng = np.random.default_rng(0)
    truth = rng.random((6, 12, 12))
    inputs = {
        "dataset": "toy",
        "split": "given",
        "truth": truth,
        "stimulus_id": np.arange(6),
        "reconstructions": {"ridge": truth * 0.5, "mean": np.full_like(truth, 0.5)},
    }
    monkeypatch.chdir(tmp_path)
    scored = score_run(**inputs)
    assert list(tmp_path.iterdir()) == []
    written = write_run(tmp_path / "run", **inputs)
    assert {key: value for key, value in written.items() if key != "software"} == {
        key: value for key, value in scored.items() if key != "software"
    }
