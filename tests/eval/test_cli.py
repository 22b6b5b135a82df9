"""Command line: re-scoring a run's file reproduces its metrics.json; one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fmri_eval import (
    EvaluationSettings,
    evaluate_run,
    load_reconstructions,
    save_reconstructions,
    write_run,
)
from fmri_eval.cli import first_difference, main
from fmri_eval.run import SCORED_KEYS

SETTINGS = EvaluationSettings(n_boot=120, seed=7, baseline="ridge")


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    truth = rng.random((8, 12, 12))
    methods = {
        "mean": np.broadcast_to(truth.mean(0), truth.shape).copy(),
        "ridge": np.clip(truth + 0.3 * rng.standard_normal(truth.shape), 0, 1),
        "ddpm-1": np.clip(truth + 0.05, 0, 1),
    }
    stimulus_id = np.array([1, 1, 1, 2, 3, 3, 4, 5])
    return truth, methods, stimulus_id


@pytest.fixture
def run_dir(tmp_path, arrays):
    truth, methods, stimulus_id = arrays
    out = tmp_path / "run"
    write_run(
        out,
        dataset="toy",
        split="kfold:2",
        truth=truth,
        stimulus_id=stimulus_id,
        reconstructions=methods,
        settings=SETTINGS,
    )
    return out


def run_cli(capsys, *argv):
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse's way out for bad options
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rescoring_the_saved_file_reproduces_metrics_json(run_dir, capsys):
    code, out, _ = run_cli(capsys, run_dir / "reconstructions.npz")
    assert code == 0
    printed = json.loads(out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(printed) == ["file", *SCORED_KEYS]
    assert (
        first_difference({key: metrics[key] for key in SCORED_KEYS}, {k: printed[k] for k in SCORED_KEYS})
        is None
    )
    assert printed["ci"] == {"level": 0.95, "unit": "stimulus", "n_boot": 120, "seed": 7}
    assert set(printed["methods"]["mean"]["vs_baseline"]) == {"pcc", "ssim", "mse", "psnr", "twoway"}


def test_check_confirms_or_names_the_first_difference(run_dir, capsys):
    code, out, err = run_cli(capsys, run_dir / "reconstructions.npz", "--check")
    assert (code, err) == (0, "")
    assert "reproduced (3 methods" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["methods"]["ridge"]["ssim_ci"][1] += 1e-6
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    code, out, err = run_cli(capsys, run_dir / "reconstructions.npz", "--check")
    assert code == 1
    assert "NOT reproduced: methods.ridge.ssim_ci[1]" in err
    assert len(err.splitlines()) == 1


def test_options_override_the_saved_settings(run_dir, capsys):
    code, out, _ = run_cli(capsys, run_dir / "reconstructions.npz", "--n-boot", 60, "--baseline", "mean")
    assert code == 0
    printed = json.loads(out)
    assert printed["ci"]["n_boot"] == 60
    assert printed["ci"]["seed"] == 7
    assert printed["baseline"] == "mean"
    assert "vs_baseline" in printed["methods"]["ridge"]
    assert "vs_baseline" not in printed["methods"]["mean"]


def test_adding_a_method_leaves_the_other_numbers_unchanged(run_dir, tmp_path, capsys):
    saved = load_reconstructions(run_dir / "reconstructions.npz")
    more = {**saved.reconstructions, "blank": np.zeros_like(saved.truth)}
    bigger = save_reconstructions(
        tmp_path / "more.npz", saved.truth, more, saved.stimulus_id, settings=saved.settings
    )
    code, out, _ = run_cli(capsys, bigger)
    assert code == 0
    methods = json.loads(out)["methods"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(methods) == ["mean", "ridge", "ddpm-1", "blank"]
    for name in ("mean", "ridge", "ddpm-1"):
        assert methods[name] == metrics["methods"][name]


def test_a_file_without_saved_settings_uses_the_defaults(tmp_path, arrays, capsys):
    truth, methods, stimulus_id = arrays
    path = save_reconstructions(tmp_path / "old.npz", truth, methods, stimulus_id)
    code, out, _ = run_cli(capsys, path, "--n-boot", 50)
    assert code == 0
    printed = json.loads(out)
    defaults = EvaluationSettings(n_boot=50, baseline="ridge", repeats_averaged=None)
    assert printed == {"file": str(path), **evaluate_run(truth, methods, stimulus_id, defaults)}
    assert printed["repeats_averaged"] is None
    assert run_cli(capsys, path, "--out", tmp_path / "old-run")[0] == 0
    assert "repeat averaging not recorded" in (tmp_path / "old-run" / "report.md").read_text()


def test_a_saved_baseline_that_is_gone_can_be_replaced(tmp_path, arrays, capsys):
    truth, methods, stimulus_id = arrays
    settings = EvaluationSettings(n_boot=40, baseline="ddpm")  # say its rows were dropped from the file
    path = save_reconstructions(tmp_path / "r.npz", truth, methods, stimulus_id, settings=settings)
    err = one_line_error(capsys, path)
    assert "baseline 'ddpm' is not among" in err
    code, out, _ = run_cli(capsys, path, "--baseline", "mean")
    assert code == 0
    assert json.loads(out)["baseline"] == "mean"


def test_out_writes_a_run_folder(run_dir, tmp_path, capsys):
    code, _, _ = run_cli(capsys, run_dir / "reconstructions.npz", "--out", tmp_path / "again")
    assert code == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    original = json.loads((run_dir / "metrics.json").read_text())
    for key in SCORED_KEYS:
        assert again[key] == original[key]
    assert "## Difference from ridge" in (tmp_path / "again" / "report.md").read_text()


def test_out_refuses_a_folder_that_is_not_a_run(run_dir, tmp_path, capsys):
    err = one_line_error(capsys, run_dir / "reconstructions.npz", "--out", tmp_path)
    assert f"--out {tmp_path} holds files but not an earlier run" in err
    assert (run_dir / "reconstructions.npz").is_file()  # replacing tmp_path whole would have deleted it


def _never(*args, **kwargs):
    raise AssertionError("scored before the input was checked")


def test_check_without_metrics_json_is_refused_before_scoring(run_dir, capsys, monkeypatch):
    (run_dir / "metrics.json").unlink()
    monkeypatch.setattr("fmri_eval.cli.evaluate_run", _never)
    err = one_line_error(capsys, run_dir / "reconstructions.npz", "--check")
    assert f"cannot read {run_dir / 'metrics.json'} to check against" in err


def test_out_that_cannot_be_created_is_refused_before_scoring(run_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr("fmri_eval.cli.write_run", _never)
    err = one_line_error(capsys, run_dir / "reconstructions.npz", "--out", tmp_path / "a-file" / "run")
    assert "is a file; choose another path" in err


def one_line_error(capsys, *argv, starts="fmri-eval: error:"):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(starts)
    return err


def test_missing_file_gives_one_line_error(tmp_path, capsys):
    err = one_line_error(capsys, tmp_path / "missing.npz")
    assert "reconstructions file not found" in err


def test_an_empty_file_gives_one_line_error(tmp_path, capsys):
    (tmp_path / "empty.npz").write_bytes(b"")
    assert "is empty (0 bytes)" in one_line_error(capsys, tmp_path / "empty.npz")


def test_unknown_baseline_is_refused_before_scoring(run_dir, capsys):
    err = one_line_error(capsys, run_dir / "reconstructions.npz", "--baseline", "ridgee")
    assert "baseline 'ridgee' is not among the methods ['ddpm-1', 'mean', 'ridge']" in err


@pytest.mark.parametrize(("option", "value"), [("--n-boot", "0"), ("--n-boot", "many"), ("--seed", "-1")])
def test_bad_numbers_are_refused_before_the_file_is_read(tmp_path, capsys, option, value):
    err = one_line_error(capsys, tmp_path / "missing.npz", option, value)
    assert option in err
    assert "not found" not in err


def test_stimulus_ids_that_do_not_match_the_trials(tmp_path, arrays, capsys):
    truth, methods, stimulus_id = arrays
    np.savez(tmp_path / "bad.npz", truth=truth, stimulus_id=stimulus_id[:5], **methods)
    err = one_line_error(capsys, tmp_path / "bad.npz")
    assert "stimulus_id has shape (5,) but 8 items were given" in err


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--n-boot", "--seed", "--baseline", "--check", "--out"):
        assert option in help_text


def test_first_difference():
    assert first_difference({"a": [1.0, 2]}, {"a": [1.0 + 1e-12, 2]}) is None
    assert first_difference({"a": [1.0, 2]}, {"a": [1.1, 2]}) == "a[0]: 1.0 vs 1.1"
    assert first_difference({"a": 1, "b": "x"}, {"a": 1, "b": "y"}) == "b: 'x' vs 'y'"
    assert first_difference({"a": 1}, {"b": 1}).startswith("top level: keys")
    assert first_difference({"a": True}, {"a": 1}) == "a: True vs 1"


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fmri_eval", str(tmp_path / "missing.npz")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("fmri-eval: error:")
