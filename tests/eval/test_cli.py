"""Command line: JSON on stdout, one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fmri_eval import evaluate_reconstructions, save_reconstructions
from fmri_eval.cli import main


@pytest.fixture
def recon_file(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.random((6, 12, 12))
    methods = {"ridge": rng.random(truth.shape), "ddpm-1": np.clip(truth + 0.05, 0, 1)}
    stimulus_id = np.array([1, 1, 2, 3, 4, 5])
    path = save_reconstructions(tmp_path / "recon.npz", truth, methods, stimulus_id)
    return path, truth, methods, stimulus_id


def test_prints_metrics_json(recon_file, capsys):
    path, truth, methods, stimulus_id = recon_file
    assert main([str(path), "--n-boot", "100", "--seed", "3"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["n_test"] == 6
    expected = evaluate_reconstructions(truth, methods, stimulus_id, n_boot=100, seed=3)
    assert output["methods"] == expected


def test_missing_file_gives_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing.npz")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fmri-eval: error: reconstructions file not found")


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--n-boot" in capsys.readouterr().out


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
