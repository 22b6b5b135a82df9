"""RGB stimuli [n, H, W, 3]: the data set, its files and loaders, and the runner, which refuses them to
methods that reconstruct grayscale only before anything trains."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.io import load_dataset
from fmri_data.methods.base import MethodSettings
from fmri_data.methods.runner import reconstruct_over_splits
from fmri_data.splits import make_splits


def colour_data(n_stimuli: int = 12, repeats: int = 2, size: int = 6) -> PairedDataset:
    """RGB stimuli mixed from three colour patterns, and voxels that are a fixed linear map of each, plus
    noise: ridge can learn them from a few stimuli."""
    rng = np.random.default_rng(0)
    patterns = rng.standard_normal((3, size, size, 3))
    mixing = rng.standard_normal((n_stimuli, 3))
    stimuli = np.clip(0.5 + 0.12 * np.einsum("nk,khwc->nhwc", mixing, patterns), 0, 1).astype(np.float32)
    ids = np.repeat(np.arange(n_stimuli), repeats)
    weights = rng.standard_normal((size * size * 3, 40))
    fmri = stimuli[ids].reshape(len(ids), -1) @ weights + 0.1 * rng.standard_normal((len(ids), 40))
    return PairedDataset(fmri=fmri.astype(np.float32), images=stimuli[ids], stimulus_id=ids)


def test_rgb_images_make_a_colour_data_set_and_other_channel_counts_are_refused():
    data = colour_data()
    data.validate()
    assert data.is_colour
    assert data.image_shape == (6, 6)
    with pytest.raises(DataError, match=r"\[n_trials, H, W, 3\] \(RGB\)"):
        PairedDataset(fmri=data.fmri, images=np.zeros((24, 6, 6, 4)), stimulus_id=data.stimulus_id)


def test_colour_survives_an_npz_round_trip(tmp_path):
    data = colour_data()
    path = tmp_path / "rgb.npz"
    data.save_npz(path)
    loaded = load_dataset(path)
    assert loaded.is_colour
    np.testing.assert_array_equal(loaded.images, data.images)


def test_colour_is_asked_of_nsd_only():
    with pytest.raises(DataError, match="--colour reads NSD's stimuli in colour; digit69 is not NSD"):
        load_dataset("digit69", colour=True)


def test_mean_and_ridge_reconstruct_colour_as_colour():
    data = colour_data()
    splits = make_splits(data, "kfold:2")
    result = reconstruct_over_splits(
        data, splits, ["mean", "ridge"], settings=MethodSettings(), progress=False
    )
    assert result.truth.shape == (24, 6, 6, 3)
    for name in ("mean", "ridge"):
        assert result.reconstructions[name].shape == result.truth.shape
    ridge_error = np.mean((result.reconstructions["ridge"] - result.truth) ** 2)
    mean_error = np.mean((result.reconstructions["mean"] - result.truth) ** 2)
    assert ridge_error < 0.5 * mean_error  # the voxels carry each channel


def test_a_grayscale_method_is_refused_colour_before_anything_trains(tmp_path):
    data = colour_data()
    splits = make_splits(data, "kfold:2")
    work = tmp_path / "work"
    with pytest.raises(DataError, match=r"^cvae, ldm reconstruct grayscale images only") as info:
        reconstruct_over_splits(
            data, splits, ["ridge", "cvae+ldm"], settings=MethodSettings(work_dir=work), progress=False
        )
    assert "mean, mlp, ridge" in str(info.value).split("; run ")[1]  # the methods that take colour
    assert not work.exists()


def test_info_says_the_images_are_rgb():
    from fmri_data.cli import describe

    assert "image size:       6x6 RGB" in describe(colour_data())
