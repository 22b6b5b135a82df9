import numpy as np
import pytest

from fmri_data.methods import MethodSettings, create_method
from fmri_encoders.methods.mlp import MlpPixels


def _pixel_correlation(prediction: np.ndarray, truth: np.ndarray) -> float:
    a = prediction.reshape(len(prediction), -1)
    b = truth.reshape(len(truth), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))))


@pytest.mark.parametrize("quick", [True, False])
def test_mlp_beats_the_mean_image_on_held_out_stimuli(quick, make_linear):
    data = make_linear()
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


def test_mlp_is_seeded(make_linear):
    data = make_linear(n_stimuli=10)
    runs = [MlpPixels(MethodSettings(device="cpu", quick=True, seed=3)).fit(data) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].predict(data.fmri), runs[1].predict(data.fmri))
