"""load_npz: what save_npz writes, plain fmri/images files, and files it must refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.loaders.npz import load_npz


def small_dataset() -> PairedDataset:
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(3, 5, 5))
    return PairedDataset.from_arrays(
        fmri=rng.normal(size=(4, 6)),
        images=images[[0, 1, 2, 0]],
        labels=np.array([3, 1, 2, 3]),
        run=np.array([0, 0, 1, 1]),
        subject=np.array(["s1", "s1", "s2", "s2"]),
        voxel_coords=rng.normal(size=(6, 3)),
        roi_masks={"V1": np.array([1, 1, 0, 0, 1, 0], bool), "V2": np.array([0, 0, 1, 1, 0, 1], bool)},
        given_test=np.array([False, False, True, True]),
        captions=np.array(["a cat", "a dog", "two birds", "a cat"]),
        metadata={"name": "tiny", "source": "somewhere.mat", "preprocessing": ["zscore"]},
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    original = small_dataset()
    loaded = load_npz(original.save_npz(tmp_path / "tiny.npz"))
    for key in (
        "fmri",
        "images",
        "stimulus_id",
        "labels",
        "run",
        "subject",
        "voxel_coords",
        "given_test",
        "captions",
    ):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(original, key), err_msg=key)
    assert loaded.roi_masks.keys() == original.roi_masks.keys()
    for name, mask in original.roi_masks.items():
        np.testing.assert_array_equal(loaded.roi_masks[name], mask)
    assert loaded.metadata == original.metadata


def test_dataset_class_method_delegates(tmp_path: Path) -> None:
    path = small_dataset().save_npz(tmp_path / "tiny.npz")
    assert PairedDataset.load_npz(path).n_trials == 4


def test_plain_file_derives_stimulus_ids_and_scales_uint8(tmp_path: Path) -> None:
    images = np.zeros((3, 4, 4), dtype=np.uint8)
    images[0, 0, 3] = 255
    images[2, 0, 3] = 255
    path = tmp_path / "plain.npz"
    np.savez(path, fmri=np.ones((3, 2)), images=images)
    data = load_npz(path)
    assert data.images[0, 0, 3] == 1.0
    assert data.stimulus_id[0] == data.stimulus_id[2] != data.stimulus_id[1]
    assert data.labels is None
    assert data.given_test is None
    assert data.metadata == {"name": "plain", "source": str(path), "format": "npz"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "none.npz")


def test_missing_images_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, fmri=np.ones((3, 2)), pictures=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match=r"'images' not found \(the file holds fmri, pictures\)"):
        load_npz(path)


def test_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    np.savez(path, fmri=np.ones((3, 2)), images=np.array([{"a": 1}] * 3, dtype=object))
    with pytest.raises(DataError, match="without pickles"):
        load_npz(path)


def test_flat_images_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.npz"
    np.savez(path, fmri=np.ones((3, 2)), images=np.zeros((3, 16)))
    with pytest.raises(DataError, match=r"\[n_trials, H, W\]"):
        load_npz(path)


def test_nan_voxels_and_range(tmp_path: Path) -> None:
    fmri = np.ones((3, 2))
    fmri[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", fmri=fmri, images=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match="NaN/inf fMRI values"):
        load_npz(tmp_path / "nan.npz")
    np.savez(tmp_path / "range.npz", fmri=np.ones((3, 2)), images=np.full((3, 4, 4), 2.0))
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        load_npz(tmp_path / "range.npz")


@pytest.mark.parametrize("content", [b"definitely not a zip archive", b""])
def test_not_an_npz(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_npz(path)


def test_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "future.npz"
    np.savez(path, fmri=np.ones((3, 2)), images=np.zeros((3, 4, 4)), format_version=np.array(99))
    with pytest.raises(DataError, match="format version 99"):
        load_npz(path)
