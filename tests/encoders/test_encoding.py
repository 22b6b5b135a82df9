"""The encoding model: which voxels it keeps, its noise variances, its likelihood and its round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_encoders.encoding import EncodingModel


def _encoded(n=100, size=6, voxels=40, informative=10, seed=0):
    """fMRI whose first `informative` voxels are linear in the pixels plus noise; the rest are noise."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size)).astype(np.float32)
    weights = rng.normal(size=(size * size, informative))
    fmri = rng.normal(size=(n, voxels)).astype(np.float32)
    fmri[:, :informative] += 8 * (images.reshape(n, -1) - 0.5) @ weights / size
    return images, fmri, np.arange(n)


def test_the_best_predicted_voxels_are_kept():
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=10).fit(images, fmri, groups)
    assert model.voxels_.tolist() == list(range(10))
    assert (model.accuracy_ > 0.5).all()
    assert model.predict(images).shape == (100, 10)
    assert model.measured(fmri).tolist() == fmri[:, :10].tolist()


def test_noise_variance_is_the_held_out_residual_variance():
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=40).fit(images, fmri, groups)
    pure_noise = np.setdiff1d(model.voxels_, np.arange(10))
    # voxels with no signal: the residual is the unit-variance noise itself
    index = np.searchsorted(model.voxels_, pure_noise)
    assert model.noise_variance_[index].mean() == pytest.approx(1.0, abs=0.25)


def test_likelihood_is_the_gaussian_negative_log_likelihood():
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=5).fit(images, fmri, groups)
    measured = model.measured(fmri[:3])
    expected = 0.5 * (((measured - model.predict(images[:3])) ** 2) / model.noise_variance_).sum(axis=1)
    got = model.likelihood()(torch.from_numpy(images[:3]), torch.from_numpy(measured))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_the_likelihood_gradient_matches_a_finite_difference():
    images, fmri, groups = _encoded(size=4)
    likelihood = EncodingModel(n_voxels=8).fit(images, fmri, groups).likelihood().double()
    image = torch.from_numpy(images[:1]).double().requires_grad_(True)
    measured = torch.from_numpy(fmri[:1, :8]).double()
    (gradient,) = torch.autograd.grad(likelihood(image, measured).sum(), image)
    step = 1e-6
    for pixel in [(0, 0, 0), (0, 1, 2), (0, 3, 3)]:
        bumped = [image.detach().clone() for _ in range(2)]
        bumped[0][pixel] += step
        bumped[1][pixel] -= step
        numeric = (likelihood(bumped[0], measured) - likelihood(bumped[1], measured)).item() / (2 * step)
        assert gradient[pixel].item() == pytest.approx(numeric, rel=1e-5)


def test_save_and_load_round_trip(tmp_path):
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=7).fit(images, fmri, groups)
    model.save(tmp_path / "encoding")
    loaded = EncodingModel.load(tmp_path / "encoding")
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    np.testing.assert_array_equal(loaded.voxels_, model.voxels_)
    assert loaded.describe() == model.describe()


def test_bad_inputs_are_refused():
    images, fmri, groups = _encoded()
    with pytest.raises(DataError, match="n_voxels"):
        EncodingModel(n_voxels=0)
    with pytest.raises(DataError, match="images but"):
        EncodingModel().fit(images[:5], fmri, groups)
    model = EncodingModel(n_voxels=3).fit(images, fmri, groups)
    with pytest.raises(DataError, match="pixels"):
        model.predict(np.zeros((2, 5, 5), np.float32))
