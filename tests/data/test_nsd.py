"""The NSD loader on a tiny copy of the published layout, written by the test."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from fmri_data.errors import DataError
from fmri_data.loaders import nsd
from fmri_data.loaders.nsd import load_nsd, nsd_paths

GRID = (4, 5, 3)


def write_nsd(root, *, trials=6, sessions=2, fmt="nii.gz", seed=0):
    """Two sessions of `trials` trials; subject 1 sees images 0..9 of the design, 2 of them shared."""
    rng = np.random.default_rng(seed)
    paths = nsd_paths(root, 1)
    for key in ("expdesign", "mask", "stimuli"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
    paths["betas"].mkdir(parents=True, exist_ok=True)
    order = rng.integers(1, 11, size=trials * sessions)  # 1-based positions in subjectim
    subjectim = np.tile(np.arange(1, 11) + 20, (8, 1))  # subject 1's images are NSD ids 20..29 (1-based)
    scipy.io.savemat(
        paths["expdesign"],
        {"masterordering": order[None], "subjectim": subjectim, "sharedix": np.array([[21, 25]])},
    )
    mask = np.zeros(GRID, np.int16)
    mask[1:3, 2:4, :2] = 1
    nib.save(nib.Nifti1Image(mask - (mask == 0), np.eye(4)), paths["mask"])
    volumes = []
    for session in range(1, sessions + 1):
        betas = rng.normal(scale=300, size=(*GRID, trials)).astype(np.int16) + 300 * session
        volumes.append(betas)
        if fmt == "nii.gz":
            nib.save(nib.Nifti1Image(betas, np.eye(4)), paths["betas"] / f"betas_session{session:02d}.nii.gz")
        else:
            with h5py.File(paths["betas"] / f"betas_session{session:02d}.hdf5", "w") as handle:
                handle["betas"] = np.transpose(betas, (3, 2, 1, 0))
    with h5py.File(paths["stimuli"], "w") as handle:
        handle["imgBrick"] = rng.integers(0, 256, size=(30, 16, 16, 3), dtype=np.uint8)
    return order, volumes, mask > 0


@pytest.mark.parametrize("fmt", ["nii.gz", "hdf5"])
def test_trials_images_sessions_and_the_shared_split(tmp_path, monkeypatch, fmt):
    order, volumes, mask = write_nsd(tmp_path, fmt=fmt)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    data = load_nsd(tmp_path, 1, image_size=8)
    assert data.fmri.shape == (12, mask.sum())
    np.testing.assert_array_equal(data.stimulus_id, order - 1 + 20)  # 0-based NSD ids
    np.testing.assert_array_equal(data.given_test, np.isin(data.stimulus_id, [20, 24]))
    np.testing.assert_array_equal(data.run, [1] * 6 + [2] * 6)
    assert data.images.shape == (12, 8, 8)
    assert data.images.min() >= 0
    assert data.images.max() <= 1
    for session in (1, 2):  # z-scored within each session
        block = data.fmri[data.run == session]
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(block.std(0), 1, atol=1e-4)
    raw = volumes[0][mask].T / 300.0
    np.testing.assert_allclose(data.fmri[:6], (raw - raw.mean(0)) / raw.std(0), atol=1e-4)


def test_nifti_and_hdf5_betas_read_the_same(tmp_path, monkeypatch):
    write_nsd(tmp_path / "a", fmt="nii.gz")
    write_nsd(tmp_path / "b", fmt="hdf5")
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    np.testing.assert_allclose(load_nsd(tmp_path / "a").fmri, load_nsd(tmp_path / "b").fmri, atol=1e-5)


def test_a_truncated_betas_file_and_a_missing_design_are_clear_errors(tmp_path, monkeypatch):
    write_nsd(tmp_path)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    betas = nsd_paths(tmp_path, 1)["betas"] / "betas_session02.nii.gz"
    betas.write_bytes(betas.read_bytes()[: len(betas.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"session 2 betas .* unreadable or truncated"):
        load_nsd(tmp_path)
    nsd_paths(tmp_path, 1)["expdesign"].unlink()
    with pytest.raises(DataError, match=r"nsd_expdesign\.mat is missing"):
        load_nsd(tmp_path)
