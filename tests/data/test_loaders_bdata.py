"""read_bdata / load_bdata on tiny BData .h5 files laid out as bdpy writes them."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.loaders.bdata import load_bdata, read_bdata

NAN = np.nan
# Columns: 0-4 voxels, 5 Label, 6 Run.
KEYS = ["VoxelData", "ROI_V1", "ROI_V2", "voxel_x", "voxel_y", "voxel_z", "Label", "Run"]
VALUES = np.array(
    [
        [1, 1, 1, 1, 1, NAN, NAN],
        [1, 1, NAN, NAN, 0, NAN, NAN],
        [NAN, 1, 1, 1, NAN, NAN, NAN],
        [10, 11, 12, 13, 14, NAN, NAN],
        [20, 21, 22, 23, 24, NAN, NAN],
        [30, 31, 32, 33, 34, NAN, NAN],
        [NAN, NAN, NAN, NAN, NAN, 1, NAN],
        [NAN, NAN, NAN, NAN, NAN, NAN, 1],
    ]
)
LABELS = np.array([2.5, 7.0, 2.5, 9.0])
RUNS = np.array([1, 1, 2, 2])


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(4, 4), dtype=np.uint8)


IMAGES = {2.5: image(1), 7.0: image(2), 9.0: image(3)}


def write_bdata(path: Path, *, old_names: bool = False, text_keys: bool = False) -> tuple[Path, np.ndarray]:
    voxels = np.arange(20, dtype=float).reshape(4, 5)
    dataset = np.column_stack([voxels, LABELS, RUNS])
    data_name, meta_name = ("dataSet", "metaData") if old_names else ("dataset", "metadata")
    with h5py.File(path, "w") as handle:
        handle.create_dataset(data_name, data=dataset)
        meta = handle.create_group(meta_name)
        if text_keys:
            meta.create_dataset("key", data=KEYS, dtype=h5py.string_dtype())
        else:
            meta.create_dataset("key", data=np.array(KEYS, dtype="S"))
        meta.create_dataset("description", data=np.array([f"1 = {k}" for k in KEYS], dtype="S"))
        meta.create_dataset("value", data=VALUES)
        handle.create_dataset("vmap/Label/2.5", data="cat")
    return path, voxels


def test_reads_keys_values_and_vmap(tmp_path: Path) -> None:
    path, _ = write_bdata(tmp_path / "s1.h5")
    bdata = read_bdata(path)
    assert bdata.keys == KEYS
    assert bdata.descriptions[1] == "1 = ROI_V1"
    np.testing.assert_array_equal(bdata.metadata("voxel_x")[:5], [10, 11, 12, 13, 14])
    assert np.isnan(bdata.metadata("voxel_x")[5])
    np.testing.assert_array_equal(bdata.get("Label")[:, 0], LABELS)
    assert bdata.vmap == {"Label": {2.5: "cat"}}


@pytest.mark.parametrize(
    ("expr", "columns"),
    [
        ("ROI_V1", [0, 1]),
        ("ROI_V1 + ROI_V2", [0, 1, 2, 3]),
        ("ROI_V1 | ROI_V2", [0, 1, 2, 3]),
        ("ROI_V1 & ROI_V2", [1]),
        ("VoxelData - ROI_V1", [2, 3, 4]),
        ("ROI_V*", [0, 1, 2, 3]),
        ("VoxelData - (ROI_V1 + ROI_V2)", [4]),
        ("ROI_V1 = 0", [4]),
        ("Label + Run", [5, 6]),
    ],
)
def test_select_expressions(tmp_path: Path, expr: str, columns: list[int]) -> None:
    bdata = read_bdata(write_bdata(tmp_path / "s1.h5")[0])
    np.testing.assert_array_equal(np.flatnonzero(bdata.columns(expr)), columns)
    assert bdata.select(expr).shape == (4, len(columns))


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("ROI_V9", r"metadata key 'ROI_V9' not found \(keys: VoxelData, ROI_V1"),
        ("ROI_V1 +", "ends early"),
        ("(ROI_V1 + ROI_V2", "unbalanced brackets"),
        ("ROI_V1 ROI_V2", "unexpected 'ROI_V2'"),
        ("ROI_V1 = x", "needs a number"),
        ("  ", "empty selection"),
    ],
)
def test_bad_selections(tmp_path: Path, expr: str, message: str) -> None:
    bdata = read_bdata(write_bdata(tmp_path / "s1.h5")[0])
    with pytest.raises(DataError, match=message):
        bdata.columns(expr)


def test_old_spelling_and_text_keys(tmp_path: Path) -> None:
    path, _ = write_bdata(tmp_path / "old.h5", old_names=True, text_keys=True)
    assert read_bdata(path).keys == KEYS


def test_load_pairs_voxels_with_images(tmp_path: Path) -> None:
    path, voxels = write_bdata(tmp_path / "s1.h5")
    data = load_bdata(path, images=IMAGES)
    np.testing.assert_array_equal(data.fmri, voxels)
    np.testing.assert_allclose(data.images[1], IMAGES[7.0] / 255.0)
    assert data.stimulus_id[0] == data.stimulus_id[2] != data.stimulus_id[1]
    np.testing.assert_array_equal(data.run, RUNS)
    np.testing.assert_array_equal(data.voxel_coords[:, 0], [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(data.roi_masks["V1"], [True, True, False, False, False])
    np.testing.assert_array_equal(data.roi_masks["V2"], [False, True, True, True, False])
    assert data.metadata["format"] == "bdata"


def test_load_with_a_function_and_an_roi(tmp_path: Path) -> None:
    path, voxels = write_bdata(tmp_path / "s1.h5")
    data = load_bdata(path, roi="ROI_V1 + ROI_V2", images=lambda label: IMAGES[label] / 255.0, name="subj")
    np.testing.assert_array_equal(data.fmri, voxels[:, :4])
    assert data.voxel_coords.shape == (4, 3)
    assert data.name == "subj"


def test_missing_image_for_a_label(tmp_path: Path) -> None:
    path, _ = write_bdata(tmp_path / "s1.h5")
    with pytest.raises(DataError, match=r"no image for stimulus label 9\.0"):
        load_bdata(path, images={2.5: IMAGES[2.5], 7.0: IMAGES[7.0]})


def test_images_of_different_sizes(tmp_path: Path) -> None:
    path, _ = write_bdata(tmp_path / "s1.h5")
    with pytest.raises(DataError, match="differ in shape"):
        load_bdata(path, images={**IMAGES, 9.0: np.zeros((5, 5))})


def test_not_bdata(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_bdata(tmp_path / "none.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(DataError, match=r"neither dataset nor dataSet found \(the file holds x\)"):
        read_bdata(other)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(DataError, match="not an HDF5 file"):
        read_bdata(text)


def test_shape_mismatch_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dataset", data=np.zeros((4, 3)))
        handle.create_dataset("metadata/key", data=np.array([b"VoxelData"]))
        handle.create_dataset("metadata/value", data=np.ones((1, 5)))
    with pytest.raises(DataError, match="not valid BData"):
        read_bdata(path)
