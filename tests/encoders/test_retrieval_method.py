import numpy as np
import pytest

from fmri_data.methods import MethodSettings, create_method
from fmri_encoders.methods.retrieval import NearestTrainingImage


@pytest.fixture(scope="module")
def fitted(make_linear):
    data = make_linear()
    train, test = data.subset(~data.given_test), data.subset(data.given_test)
    method = create_method("retrieval", MethodSettings(device="cpu", quick=True))
    assert isinstance(method, NearestTrainingImage)
    return method.fit(train), train, test


def test_retrieval_returns_training_images(fitted):
    method, train, test = fitted
    prediction = method.predict(test.fmri)
    assert prediction.shape == (test.n_trials, 8, 8)
    assert prediction.dtype == np.float32
    assert prediction.min() >= 0.0
    assert prediction.max() <= 1.0
    training_images = train.images.reshape(train.n_trials, -1)
    for image in prediction.reshape(len(prediction), -1):
        assert (training_images == image).all(axis=1).any()
    assert len(method.images_) == train.n_stimuli


def test_similarities_are_cosines_against_any_candidates(fitted):
    method, train, test = fitted
    candidates = np.concatenate([train.images[:4], test.images[:3]])
    similarity = method.similarities(test.fmri, candidates)
    assert similarity.shape == (test.n_trials, 7)
    assert np.all(np.abs(similarity) <= 1.0 + 1e-5)
    nearest = method.similarities(test.fmri, method.images_).argmax(axis=1)
    np.testing.assert_array_equal(method.images_[nearest], method.predict(test.fmri))


def test_a_full_fit_identifies_held_out_stimuli_above_chance(make_linear):
    data = make_linear(n_stimuli=40)
    train, test = data.subset(~data.given_test), data.subset(data.given_test)
    method = NearestTrainingImage(MethodSettings(device="cpu"), epochs=40).fit(train)
    stimuli = np.unique(test.stimulus_id)
    candidates = np.stack([test.images[test.stimulus_id == s][0] for s in stimuli])
    top1 = np.mean(stimuli[method.similarities(test.fmri, candidates).argmax(axis=1)] == test.stimulus_id)
    assert top1 >= 0.6  # chance is 1/5
