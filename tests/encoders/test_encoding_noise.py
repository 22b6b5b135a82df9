"""The encoding model's correlated noise model: its precision, its likelihood and gradient, its round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_encoders.encoding import EncodingModel
from fmri_encoders.noise import correlated_noise_precision


def _shared_noise(n=120, size=4, voxels=12, seed=0):
    """fMRI linear in the pixels plus noise that one common source makes strongly correlated."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size)).astype(np.float32)
    weights = rng.normal(size=(size * size, voxels))
    common = rng.normal(size=(n, 1))
    noise = 0.3 * rng.normal(size=(n, voxels)) + common
    fmri = (4 * (images.reshape(n, -1) - 0.5) @ weights / size + noise).astype(np.float32)
    return images, fmri, np.arange(n)


def test_the_correlated_precision_is_that_of_the_out_of_fold_residuals():
    images, fmri, groups = _shared_noise()
    model = EncodingModel(n_voxels=12).fit(images, fmri, groups)
    covariance = np.linalg.inv(model.noise_precision_.astype(np.float64))
    np.testing.assert_allclose(np.diag(covariance), model.noise_variance_, rtol=1e-3)
    correlation = covariance / np.sqrt(np.outer(np.diag(covariance), np.diag(covariance)))
    off_diagonal = correlation[~np.eye(12, dtype=bool)]
    assert off_diagonal.min() > 0.5  # the common source, kept though shrunk


def test_the_correlated_likelihood_is_the_gaussian_quadratic_form():
    images, fmri, groups = _shared_noise()
    model = EncodingModel(n_voxels=12).fit(images, fmri, groups)
    measured = model.measured(fmri[:3])
    residual = (measured - model.predict(images[:3])).astype(np.float64)
    expected = 0.5 * np.einsum("nv,vw,nw->n", residual, model.noise_precision_.astype(np.float64), residual)
    got = model.likelihood("correlated")(torch.from_numpy(images[:3]), torch.from_numpy(measured))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
    independent = model.likelihood("independent")(torch.from_numpy(images[:3]), torch.from_numpy(measured))
    assert not np.allclose(got.numpy(), independent.numpy(), rtol=0.05)  # the correlations count


def test_the_correlated_likelihood_gradient_is_the_closed_form():
    images, fmri, groups = _shared_noise()
    model = EncodingModel(n_voxels=8).fit(images, fmri, groups)
    likelihood = model.likelihood("correlated").double()
    assert likelihood.precision.dim() == 2
    image = torch.from_numpy(images[:1]).double().requires_grad_(True)
    measured = model.measured(fmri[:1]).astype(np.float64)
    (gradient,) = torch.autograd.grad(likelihood(image, torch.from_numpy(measured)).sum(), image)
    residual = measured[0] - model.predict(images[:1])[0]
    precision, coef = model.noise_precision_.astype(np.float64), model.coef_.astype(np.float64)
    expected = -(coef @ (precision @ residual)).reshape(images.shape[1:])  # d/dx of 0.5 r'Pr, r = y - x C - b
    np.testing.assert_allclose(gradient[0].numpy(), expected, rtol=1e-4, atol=1e-6)


def test_independent_residuals_give_a_nearly_diagonal_precision():
    rng = np.random.default_rng(1)
    variances = np.array([0.5, 1.0, 2.0, 4.0])
    residuals = rng.normal(size=(2000, 4)) * np.sqrt(variances)
    precision = correlated_noise_precision(residuals, variances)
    np.testing.assert_allclose(precision, np.diag(1 / variances), atol=0.05)


def test_the_precision_round_trips_and_an_older_fit_keeps_independent_noise(tmp_path):
    images, fmri, groups = _shared_noise()
    model = EncodingModel(n_voxels=6).fit(images, fmri, groups)
    model.save(tmp_path / "new")
    np.testing.assert_array_equal(
        EncodingModel.load(tmp_path / "new").noise_precision_, model.noise_precision_
    )
    del model.noise_precision_  # as a fit saved before the correlated model existed
    model.save(tmp_path / "old")
    older = EncodingModel.load(tmp_path / "old")
    assert older.likelihood("independent").precision.dim() == 1
    with pytest.raises(DataError, match="saved before its correlated noise model existed; fit it again"):
        older.likelihood("correlated")
    with pytest.raises(
        DataError, match="encoding_noise must be one of independent, correlated, got corelated"
    ):
        model.likelihood("corelated")
