import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.preprocessing import Preprocessing, VoxelSelector, VoxelStandardizer, average_repeats


def test_standardizer_uses_training_statistics_only():
    train = np.array([[0.0, 1.0], [2.0, 1.0]], dtype=np.float32)
    test = np.array([[4.0, 3.0]], dtype=np.float32)
    scaler = VoxelStandardizer().fit(train)
    np.testing.assert_allclose(scaler.transform(train), [[-1, 0], [1, 0]])
    # voxel 0: (4 - 1) / 1; voxel 1 is constant in training -> scale 1: (3 - 1) / 1
    np.testing.assert_allclose(scaler.transform(test), [[3, 2]])


def test_f_stat_selection_prefers_reliable_voxels():
    rng = np.random.default_rng(0)
    stimulus = np.repeat(np.arange(10), 3)
    signal = rng.normal(size=10)[stimulus]
    fmri = rng.normal(size=(30, 5))
    fmri[:, 3] += 5 * signal
    selector = VoxelSelector(1, "f_stat").fit(fmri, stimulus)
    np.testing.assert_array_equal(selector.voxels_, [3])


def test_f_stat_needs_repeats():
    with pytest.raises(DataError, match="repeated"):
        VoxelSelector(1, "f_stat").fit(np.ones((4, 2)), np.arange(4))


def test_average_repeats_means_each_stimulus(linear_dataset):
    averaged = average_repeats(linear_dataset)
    assert averaged.n_trials == linear_dataset.n_stimuli
    first = np.flatnonzero(linear_dataset.stimulus_id == 7)
    row = np.flatnonzero(averaged.stimulus_id == 7)[0]
    np.testing.assert_allclose(averaged.fmri[row], linear_dataset.fmri[first].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(averaged.images[row], linear_dataset.images[first[0]])
    assert "averaged repeats" in averaged.metadata["preprocessing"][-1]


def test_preprocessing_fits_on_train_and_reports_what_it_did(linear_dataset):
    train, test = linear_dataset.subset(np.arange(40)), linear_dataset.subset(np.arange(40, 60))
    prep = Preprocessing(zscore=True, n_voxels=10, average_repeats="test")
    new_train, new_test = prep.apply(train, test)
    assert new_train.fmri.shape == (40, 10)
    assert new_test.n_trials == 10
    np.testing.assert_allclose(new_train.fmri.mean(axis=0), 0, atol=1e-5)
    assert not np.allclose(new_test.fmri.mean(axis=0), 0, atol=1e-3)
    assert any("averaged" in note for note in prep.describe())
