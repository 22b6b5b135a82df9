"""The NSD loader on a tiny copy of the published layout, written by the test."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.loaders import nsd
from fmri_data.loaders.nsd import load_nsd, nsd_paths


@pytest.mark.parametrize("fmt", ["nii.gz", "hdf5"])
def test_trials_images_sessions_and_the_shared_split(write_nsd_layout, tmp_path, monkeypatch, fmt):
    order, volumes, mask = write_nsd_layout(tmp_path, fmt=fmt)
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


def test_nifti_and_hdf5_betas_read_the_same(write_nsd_layout, tmp_path, monkeypatch):
    write_nsd_layout(tmp_path / "a", fmt="nii.gz")
    write_nsd_layout(tmp_path / "b", fmt="hdf5")
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    np.testing.assert_allclose(load_nsd(tmp_path / "a").fmri, load_nsd(tmp_path / "b").fmri, atol=1e-5)


def test_a_truncated_betas_file_and_a_missing_design_are_clear_errors(
    write_nsd_layout, tmp_path, monkeypatch
):
    write_nsd_layout(tmp_path)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    betas = nsd_paths(tmp_path, 1)["betas"] / "betas_session02.nii.gz"
    betas.write_bytes(betas.read_bytes()[: len(betas.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"session 2 betas .* unreadable or truncated"):
        load_nsd(tmp_path)
    nsd_paths(tmp_path, 1)["expdesign"].unlink()
    with pytest.raises(DataError, match=r"nsd_expdesign\.mat is missing"):
        load_nsd(tmp_path)


def test_captions_come_from_the_stimulus_table_and_coco(write_nsd_layout, tmp_path, monkeypatch):
    write_nsd_layout(tmp_path, captions=True)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    data = load_nsd(tmp_path, 1, image_size=8)
    expected = [f"a photo of image {i}\nanother caption" for i in data.stimulus_id]  # by id, stripped
    assert list(data.captions) == expected
    test = data.subset(data.given_test)
    assert list(test.captions) == [f"a photo of image {i}\nanother caption" for i in test.stimulus_id]


def test_without_the_stimulus_table_there_are_no_captions(write_nsd_layout, tmp_path, monkeypatch):
    write_nsd_layout(tmp_path)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    assert load_nsd(tmp_path, 1, image_size=8).captions is None


def test_a_missing_caption_file_leaves_the_data_without_captions_and_says_why(
    write_nsd_layout, tmp_path, monkeypatch
):
    write_nsd_layout(tmp_path, captions=True)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    (nsd_paths(tmp_path, 1)["annotations"] / "captions_val2017.json").unlink()
    data = load_nsd(tmp_path, 1, image_size=8)
    assert data.captions is None
    assert "captions_val2017.json is absent" in data.metadata["captions"]


def test_colour_keeps_the_stimuli_rgb_whose_luminance_is_the_grayscale_load(
    write_nsd_layout, tmp_path, monkeypatch
):
    write_nsd_layout(tmp_path)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    gray = load_nsd(tmp_path, 1, image_size=8)
    colour = load_nsd(tmp_path, 1, image_size=8, colour=True)
    assert colour.is_colour
    assert not gray.is_colour
    assert colour.images.shape == (12, 8, 8, 3)
    assert colour.image_shape == gray.image_shape == (8, 8)
    np.testing.assert_array_equal(colour.fmri, gray.fmri)
    luminance = colour.images @ np.array([0.299, 0.587, 0.114], np.float32)  # resizing is linear
    np.testing.assert_allclose(luminance, gray.images, atol=1e-5)
    assert not np.allclose(colour.images[..., 0], colour.images[..., 2])  # the fixture's channels differ
    assert colour.metadata["images"] == "RGB at 8x8"


def test_grayscale_stimuli_are_the_luminance_divided_by_255_bit_for_bit(
    write_nsd_layout, tmp_path, monkeypatch
):
    """The formula every grayscale NSD run so far read (a resumed run compares the data's digest)."""
    import h5py
    from scipy.ndimage import zoom

    write_nsd_layout(tmp_path)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    data = load_nsd(tmp_path, 1, image_size=8)
    with h5py.File(nsd_paths(tmp_path, 1)["stimuli"], "r") as handle:
        rgb = handle["imgBrick"][int(data.stimulus_id[0])]
    luminance = np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    expected = np.clip(zoom(luminance, 8 / 16, order=1), 0.0, 1.0)[:8, :8]
    np.testing.assert_array_equal(data.images[0], expected)
