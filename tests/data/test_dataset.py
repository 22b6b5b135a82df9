from dataclasses import replace

import numpy as np
import pytest

from fmri_data.dataset import TRIAL_FIELDS, PairedDataset, stimulus_ids_from_images
from fmri_data.errors import DataError


def test_identical_images_share_a_stimulus_id():
    a, b = np.zeros((4, 4)), np.eye(4)
    ids = stimulus_ids_from_images(np.stack([a, b, a, b + 1e-6, np.ones((4, 4))]))
    np.testing.assert_array_equal(ids, [0, 1, 0, 1, 2])


def test_npz_round_trip_keeps_every_field(tmp_path, linear_dataset):
    data = linear_dataset
    data.labels = np.arange(data.n_trials) % 2
    data.run = np.arange(data.n_trials) // 10
    data.subject = np.array(["s1"] * data.n_trials)
    data.voxel_coords = np.arange(data.n_voxels * 3, dtype=np.float32).reshape(-1, 3)
    data.roi_masks = {"V1": np.arange(data.n_voxels) < 20}
    data.metadata["note"] = {"nested": [1, 2]}
    path = data.save_npz(tmp_path / "d.npz")
    back = PairedDataset.load_npz(path)
    for field in ("fmri", "images", "stimulus_id", "labels", "run", "subject", "voxel_coords", "given_test"):
        np.testing.assert_array_equal(getattr(back, field), getattr(data, field))
    np.testing.assert_array_equal(back.roi_masks["V1"], data.roi_masks["V1"])
    assert back.metadata["note"] == {"nested": [1, 2]}
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.update(images=f["images"][:-1]), "images"),
        (lambda f: f.update(images=np.zeros((len(f["fmri"]), 4, 5))), "square"),
        (lambda f: f["fmri"].__setitem__((2, 3), np.nan), "NaN"),
        (lambda f: f.update(images=f["images"] * 2), "[0, 1]"),
        (lambda f: f.update(stimulus_id=f["stimulus_id"][:-1]), "stimulus_id"),
    ],
)
def test_invalid_arrays_are_refused_with_a_reason(linear_dataset, change, message):
    fields = {
        "fmri": linear_dataset.fmri.copy(),
        "images": linear_dataset.images.copy(),
        "stimulus_id": linear_dataset.stimulus_id,
    }
    change(fields)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PairedDataset(**fields)


def test_subset_and_voxel_selection(linear_dataset):
    linear_dataset.roi_masks = {"V1": np.arange(linear_dataset.n_voxels) % 2 == 0}
    part = linear_dataset.subset([0, 5]).select_voxels(np.arange(10))
    assert part.fmri.shape == (2, 10)
    np.testing.assert_array_equal(part.images[1], linear_dataset.images[5])
    assert part.roi_masks["V1"].sum() == 5
    with pytest.raises(DataError, match="no trials"):
        linear_dataset.subset(np.zeros(linear_dataset.n_trials, dtype=bool))


@pytest.mark.parametrize("name", TRIAL_FIELDS)
def test_each_declared_per_trial_field_is_checked_subset_and_saved(tmp_path, linear_dataset, name):
    n = linear_dataset.n_trials
    with pytest.raises(DataError, match=f"{name} must have one entry per trial"):
        replace(linear_dataset, **{name: np.zeros(n - 1)})
    data = replace(linear_dataset, **{name: np.arange(n) % 3})
    np.testing.assert_array_equal(getattr(data.subset([4, 1]), name), getattr(data, name)[[4, 1]])
    back = PairedDataset.load_npz(data.save_npz(tmp_path / "d.npz"))
    np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
