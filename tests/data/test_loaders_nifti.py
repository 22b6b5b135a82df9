"""load_nifti_runs on tiny 4-D runs, a mask and label CSVs in nilearn's Miyawaki 2008 layout."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.loaders.nifti import LAG_VOLUMES, load_nifti_runs

GRID = (3, 3, 2)
AFFINE = np.diag([2.0, 3.0, 4.0, 1.0])
AFFINE[:3, 3] = [-10.0, 5.0, 1.0]
# 3x3 patterns with one lit pixel each, all asymmetric: pattern k lights pixel (k // 3, k % 3).
PATTERNS = [np.eye(9)[k].reshape(3, 3) for k in range(9)]


def write_run(
    folder: Path, index: int, n_volumes: int, patterns: list[int | None]
) -> tuple[Path, Path, np.ndarray]:
    """One run: voxel values 1000*run + volume (+ voxel/100), and a CSV whose row t is pattern[t] or rest."""
    data = np.zeros((*GRID, n_volumes), dtype=np.float32)
    for t in range(n_volumes):
        data[..., t] = 1000 * index + t + np.arange(np.prod(GRID)).reshape(GRID) / 100
    func = folder / f"func_run{index:02d}.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), func)
    rows = [np.full(9, -1) if p is None else PATTERNS[p].flatten(order="F") for p in patterns]
    label = folder / f"label_run{index:02d}.csv"
    np.savetxt(label, np.array(rows, dtype=int), fmt="%d", delimiter=",")
    return func, label, data


@pytest.fixture
def runs(tmp_path: Path) -> dict:
    mask = np.zeros(GRID, dtype=np.uint8)
    mask[0, 0, 0] = mask[1, 2, 0] = mask[2, 1, 1] = mask[0, 2, 1] = 1
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, AFFINE), mask_path)
    first = write_run(tmp_path, 0, 6, [None, 1, 2, 1, None, None])
    second = write_run(tmp_path, 1, 5, [5, None, 7, 0, 3])
    return {"mask": mask_path, "mask_array": mask.astype(bool), "runs": [first, second]}


def load(runs: dict, **options):
    funcs = [r[0] for r in runs["runs"]]
    labels = [r[1] for r in runs["runs"]]
    options.setdefault("image_size", None)  # keep the 3x3 patterns as drawn
    return load_nifti_runs(funcs, runs["mask"], labels, pattern_shape=(3, 3), **options)


def test_lag_pairs_volume_t_plus_2_with_label_row_t_and_drops_rest(runs: dict) -> None:
    assert LAG_VOLUMES == 2
    data = load(runs)
    # run 0 rows 0..3 pair with volumes 2..5 (rows 4, 5 are cut by the lag); rest row 0 dropped.
    # run 1 rows 0..2 pair with volumes 2..4; rest row 1 dropped.
    np.testing.assert_array_equal(data.run, [0, 0, 0, 1, 1])
    volumes = np.floor(data.fmri[:, 0]).astype(int)
    np.testing.assert_array_equal(volumes, [3, 4, 5, 1002, 1004])
    expected = [PATTERNS[p] for p in (1, 2, 1, 5, 7)]
    np.testing.assert_array_equal(data.images, expected)
    assert data.stimulus_id[0] == data.stimulus_id[2]
    assert data.n_stimuli == 4


def test_voxels_follow_the_mask_and_affine(runs: dict) -> None:
    data = load(runs)
    indices = np.argwhere(runs["mask_array"])
    _, _, volumes = runs["runs"][0]
    np.testing.assert_allclose(data.fmri[0], volumes[..., 3][runs["mask_array"]])
    expected = indices * [2.0, 3.0, 4.0] + [-10.0, 5.0, 1.0]
    np.testing.assert_allclose(data.voxel_coords, expected)
    assert data.n_voxels == 4
    assert data.metadata["lag_volumes"] == 2


def test_images_are_upright_and_upsampled(runs: dict) -> None:
    data = load(runs, image_size=6)
    assert data.image_shape == (6, 6)
    lit = np.zeros((6, 6))
    lit[0:2, 2:4] = 1  # pattern 1 lights pixel (0, 1)
    np.testing.assert_array_equal(data.images[0], lit)


def test_rest_kept_as_blank_and_zero_lag(runs: dict) -> None:
    data = load(runs, drop_rest=False, lag_volumes=0)
    assert data.n_trials == 11
    assert data.images[0].sum() == 0
    np.testing.assert_array_equal(np.floor(data.fmri[:, 0]).astype(int)[:3], [0, 1, 2])


def test_mask_and_run_grids_disagree(runs: dict, tmp_path: Path) -> None:
    other = tmp_path / "small_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), AFFINE), other)
    with pytest.raises(DataError, match=r"does not match the mask's grid \(2, 2, 2\)"):
        load_nifti_runs([runs["runs"][0][0]], other, [runs["runs"][0][1]], pattern_shape=(3, 3))


def test_affines_disagree(runs: dict, tmp_path: Path) -> None:
    other = tmp_path / "shifted_mask.nii.gz"
    nib.save(nib.Nifti1Image(runs["mask_array"].astype(np.uint8), np.eye(4)), other)
    with pytest.raises(DataError, match="affine differs"):
        load_nifti_runs([runs["runs"][0][0]], other, [runs["runs"][0][1]], pattern_shape=(3, 3))


def test_label_rows_must_match_volumes(runs: dict) -> None:
    func0, label0 = runs["runs"][0][:2]
    func1 = runs["runs"][1][0]
    with pytest.raises(DataError, match="6 label rows of 9 values, but the run has 5 volumes"):
        load_nifti_runs([func1], runs["mask"], [label0], pattern_shape=(3, 3))
    with pytest.raises(DataError, match="2 functional runs but 1 label files"):
        load_nifti_runs([func0, func1], runs["mask"], [label0], pattern_shape=(3, 3))
    with pytest.raises(DataError, match="patterns have 100 pixels"):
        load_nifti_runs([func0], runs["mask"], [label0])


def test_missing_files(runs: dict, tmp_path: Path) -> None:
    func0, label0 = runs["runs"][0][:2]
    with pytest.raises(DataError, match="no such file"):
        load_nifti_runs([tmp_path / "nope.nii.gz"], runs["mask"], [label0], pattern_shape=(3, 3))
    with pytest.raises(DataError, match="no such file"):
        load_nifti_runs([func0], runs["mask"], [tmp_path / "nope.csv"], pattern_shape=(3, 3))
