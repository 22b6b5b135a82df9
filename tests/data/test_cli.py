"""The fmri-data command line: info, download, and one-line errors with exit status 2."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fmri_data import catalog
from fmri_data.cli import main
from fmri_data.dataset import PairedDataset


def write_dataset(path: Path, *, leak: bool) -> Path:
    """Six trials of four stimuli (two shown twice); the last two trials are the given test set."""
    rng = np.random.default_rng(0)
    stimuli = rng.uniform(size=(4, 5, 5))
    order = [0, 1, 2, 3, 0, 1] if leak else [0, 1, 0, 1, 2, 3]
    return PairedDataset.from_arrays(
        fmri=rng.normal(size=(6, 7)),
        images=stimuli[order],
        run=np.array([3, 3, 4, 4, 5, 5]),
        given_test=np.array([False] * 4 + [True] * 2),
        metadata={"name": "toy"},
    ).save_npz(path)


def test_info_prints_the_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(write_dataset(tmp_path / "toy.npz", leak=True))]) == 0
    out = capsys.readouterr().out
    for line in (
        "name:             toy",
        "trials:           6",
        "voxels:           7",
        "image size:       5x5",
        "distinct stimuli: 4",
        "repeats:          trials per stimulus min 1, median 1.5, max 2",
        "labels:           none",
        "runs:             3 distinct (3..5)",
        "given split:      4 train / 2 test trials; 2 of 2 test stimuli also in training (LEAKS",
    ):
        assert line in out


def test_info_on_a_clean_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(write_dataset(tmp_path / "toy.npz", leak=False))]) == 0
    assert "0 of 2 test stimuli also in training (no leak)" in capsys.readouterr().out


def test_info_without_a_given_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.npz"
    np.savez(path, fmri=np.ones((2, 3)), images=np.zeros((2, 4, 4)))
    assert main(["info", str(path)]) == 0
    assert "given split:      no given split" in capsys.readouterr().out


def test_missing_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "nothing.mat")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("fmri-data: error: no such file")


def test_download_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "digit69_28x28.mat"
    source.write_bytes(b"bytes")
    digest = hashlib.sha256(b"bytes").hexdigest()
    entry = replace(catalog.CATALOG["digit69"], url=source.as_uri(), sha256=digest)
    monkeypatch.setitem(catalog.CATALOG, "digit69", entry)
    assert main(["download", "digit69", "--dest", str(tmp_path / "dest")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dest" / "digit69_28x28.mat")
    monkeypatch.setitem(catalog.CATALOG, "digit69", replace(entry, sha256="f" * 64))
    assert main(["download", "digit69", "--dest", str(tmp_path / "other"), "--force"]) == 2
    assert "does not match the expected" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fmri_data", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0
    assert "usage: fmri-data" in result.stdout
    assert "download" in result.stdout
