"""load_dataset: from "sim", a catalog name or a path to the right loader, with clear refusals."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from fmri_data.catalog import CATALOG
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.io import load_dataset


def write_mat(path: Path) -> Path:
    rng = np.random.default_rng(0)
    scipy.io.savemat(
        path,
        {
            "fmriTrn": rng.normal(size=(3, 4)),
            "fmriTest": rng.normal(size=(1, 4)),
            "stimTrn": rng.integers(0, 256, (3, 9), dtype=np.uint8),
            "stimTest": rng.integers(0, 256, (1, 9), dtype=np.uint8),
            "labelTrn": np.array([[21], [22], [23]]),
            "labelTest": np.array([[24]]),
        },
    )
    return path


def test_mat_and_npz_paths(tmp_path: Path) -> None:
    from_mat = load_dataset(write_mat(tmp_path / "a.mat"))
    assert from_mat.n_trials == 4
    assert from_mat.image_shape == (3, 3)
    from_npz = load_dataset(str(from_mat.save_npz(tmp_path / "a.npz")))
    np.testing.assert_array_equal(from_npz.fmri, from_mat.fmri)


def test_catalog_name_uses_entry_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mat(tmp_path / CATALOG["miyawaki"].filename)
    monkeypatch.setenv("FMRI_DATA_DIR", str(tmp_path))
    data = load_dataset("miyawaki")
    np.testing.assert_array_equal(data.run, [21, 22, 23, 24])
    assert data.labels is None
    assert data.name == "miyawaki"


def test_sim_is_loaded_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = PairedDataset.from_arrays(fmri=np.zeros((2, 3)), images=np.zeros((2, 4, 4)))
    module = types.ModuleType("fmri_data.simulator")
    module.simulate_miyawaki = lambda: fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fmri_data.simulator", module)
    assert load_dataset("sim") is fake


def test_missing_path_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file .*; give sim, digit69, miyawaki or a .mat/.npz path"):
        load_dataset(tmp_path / "nothing.mat")


def test_nifti_and_bdata_need_python(tmp_path: Path) -> None:
    nii = tmp_path / "run.nii.gz"
    nii.write_bytes(b"x")
    with pytest.raises(DataError, match="load_nifti_runs"):
        load_dataset(nii)
    h5 = tmp_path / "subject.h5"
    with h5py.File(h5, "w") as handle:
        handle.create_dataset("dataset", data=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"not MAT v7\.3; .*load_bdata"):
        load_dataset(h5)
    other = tmp_path / "table.csv"
    other.write_text("1,2\n")
    with pytest.raises(DataError, match=r"unknown file type '\.csv'"):
        load_dataset(other)
