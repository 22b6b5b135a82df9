import numpy as np
import pytest
import torch

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, create_method
from fmri_encoders.methods.mlp import MlpPixels


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and spin-waiting threads crawl on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _toy(n_stimuli=30, repeats=2, n_voxels=60, size=8, noise=0.1, seed=0) -> PairedDataset:
    """Binary 8x8 images seen through a random linear map plus noise; the last 5 stimuli are for testing."""
    rng = np.random.default_rng(seed)
    stimuli = (rng.random((n_stimuli, size, size)) > 0.5).astype(np.float32)
    ids = np.repeat(np.arange(n_stimuli), repeats)
    fmri = stimuli[ids].reshape(len(ids), -1) @ (rng.normal(size=(size * size, n_voxels)) / size)
    fmri += noise * rng.normal(size=fmri.shape)
    return PairedDataset(fmri=fmri, images=stimuli[ids], stimulus_id=ids, given_test=ids >= n_stimuli - 5)


def _pixel_correlation(prediction: np.ndarray, truth: np.ndarray) -> float:
    a = prediction.reshape(len(prediction), -1)
    b = truth.reshape(len(truth), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))))


@pytest.mark.parametrize("quick", [True, False])
def test_mlp_beats_the_mean_image_on_held_out_stimuli(quick):
    data = _toy()
    train, test = data.subset(~data.given_test), data.subset(data.given_test)
    method = create_method("mlp", MethodSettings(device="cpu", quick=quick))
    assert isinstance(method, MlpPixels)
    prediction = method.fit(train).predict(test.fmri)
    assert prediction.shape == (test.n_trials, 8, 8)
    assert prediction.dtype == np.float32
    assert prediction.min() >= 0.0
    assert prediction.max() <= 1.0
    mean_image = np.broadcast_to(train.images.mean(axis=0), test.images.shape)
    assert _pixel_correlation(prediction, test.images) > _pixel_correlation(mean_image, test.images) + 0.2
    assert 1 <= method.best_epochs_ <= (method.quick_epochs if quick else method.max_epochs)


def test_mlp_is_seeded():
    data = _toy(n_stimuli=10)
    runs = [MlpPixels(MethodSettings(device="cpu", quick=True, seed=3)).fit(data) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].predict(data.fmri), runs[1].predict(data.fmri))
