"""The diffusion routes' likelihood under a correlated noise model: refused early when unknown, reaching
guidance and sample weights, and chosen on validation with one probe for both models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.cvae import ConditionalVAE, ConditionalVAEConfig
from fmri_diffusion.methods.reweighting import importance_weights
from fmri_encoders.encoding import EncodingModel
from fmri_encoders.training import TrainingConfig


def _encoding(n=40, size=5, voxels=10, seed=0):
    """An encoding model of random images whose voxels share a common noise source."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size)).astype(np.float32)
    weights = rng.normal(size=(size * size, voxels))
    fmri = images.reshape(n, -1) @ weights + 0.2 * rng.normal(size=(n, voxels)) + rng.normal(size=(n, 1))
    fmri = fmri.astype(np.float32)
    return fmri, EncodingModel(n_voxels=voxels, kind="ridge").fit(images, fmri, np.arange(n))


@pytest.mark.parametrize(
    "settings",
    [
        MethodSettings(sampling={"encoding_noise": "corelated"}),
        MethodSettings(choices={"encoding_noise": ("independent", "corelated")}),
    ],
)
@pytest.mark.parametrize("name", ["ddpm", "cvae", "sd-lora", "brain-diffuser"])
def test_an_unknown_noise_model_is_refused_before_any_training(name, settings):
    with pytest.raises(
        DataError, match=r"^encoding_noise must be one of independent, correlated, got corelated"
    ):
        create_method(name, settings)


def test_sample_weights_use_the_noise_model_asked_for():
    fmri, encoding = _encoding()
    samples = np.random.default_rng(1).random((4, 3, 5, 5)).astype(np.float32)
    residual = encoding.measured(fmri[:3]) - (
        samples.reshape(4, 3, -1) @ encoding.coef_ + encoding.intercept_
    )
    nll = 0.5 * np.einsum("knv,vw,knw->kn", residual, encoding.noise_precision_, residual)
    expected = np.exp(-1e-2 * (nll - nll.min(0)))
    correlated = importance_weights(samples, fmri[:3], encoding, 1e-2, "correlated")
    np.testing.assert_allclose(correlated, expected / expected.sum(0), rtol=1e-3, atol=1e-9)
    assert not np.allclose(correlated, importance_weights(samples, fmri[:3], encoding, 1e-2), atol=1e-3)


@pytest.mark.parametrize(("noise", "dims"), [("independent", 1), ("correlated", 2)])
def test_guidance_steers_by_the_configured_noise_model(noise, dims):
    _fmri, encoding = _encoding()
    method = create_method(
        "ddpm", MethodSettings(sampling={"likelihood_weight": 1.0, "encoding_noise": noise})
    )
    method.encoding_ = encoding
    assert method.steers_steps()
    assert method._likelihood_options()["likelihood"].precision.dim() == dims


def test_the_cvae_weighs_and_steers_by_correlated_noise_when_asked(linear_split, tmp_path, monkeypatch):
    train, test = linear_split
    settings = MethodSettings(device="cpu", seed=2, work_dir=tmp_path / "c", progress=False)
    config = ConditionalVAEConfig(
        n_samples=6,
        likelihood_weight=300.0,
        encoding_noise="correlated",
        training=TrainingConfig(max_steps=60, batch_size=16, ema_decay=None, progress=False),
    )
    method = ConditionalVAE(settings, config).fit(train)
    samples = method.sample(test.fmri, 6)
    weights = importance_weights(samples, test.fmri, method.encoding_, 300.0, "correlated")
    rows = method.predict_named(test.fmri)
    np.testing.assert_allclose(rows["cvae"], np.einsum("kn,knhw->nhw", weights, samples), atol=1e-6)
    independent = importance_weights(samples, test.fmri, method.encoding_, 300.0)
    assert not np.allclose(rows["cvae"], np.einsum("kn,knhw->nhw", independent, samples), atol=1e-4)
    asked = []
    likelihood = EncodingModel.likelihood
    monkeypatch.setattr(
        EncodingModel, "likelihood", lambda self, noise: asked.append(noise) or likelihood(self, noise)
    )
    method.config = replace(method.config, langevin_steps=2)  # its chains follow the same likelihood
    method.sample(test.fmri, 2)
    assert asked == ["correlated"]
    monkeypatch.undo()

    folder = tmp_path / "c" / "cvae" / "model"
    reloaded = load_method(folder, settings)  # it samples as it was run
    assert reloaded.config.encoding_noise == "correlated"
    np.testing.assert_allclose(reloaded.predict(test.fmri), rows["cvae"], atol=1e-6)
    del method.encoding_.noise_precision_  # as an encoding model saved before the correlated one existed
    method.encoding_.save(folder / "encoding")
    with pytest.raises(DataError, match="saved before its correlated noise model existed"):
        load_method(folder, settings)  # refused on loading, not after sampling
    as_independent = replace(settings, sampling={"encoding_noise": "independent"})
    assert load_method(folder, as_independent).encoding_.likelihood("independent").precision.dim() == 1


def test_validation_scores_both_noise_models_with_one_probe(make_linear, tmp_path, monkeypatch):
    dataset = make_linear(size=12)  # SSIM, half of the validation score, needs 11 px
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    fits = []
    fit_parts = type(create_method("ddpm")).fit_parts
    monkeypatch.setattr(
        type(create_method("ddpm")), "fit_parts", lambda self, data: fits.append(1) or fit_parts(self, data)
    )
    settings = MethodSettings(device="cpu", quick=True, seed=1, work_dir=tmp_path / "w", progress=False)
    chooser = replace(
        settings, choices={"encoding_noise": ("independent", "correlated"), "sample_weight": (300.0,)}
    )
    method = create_method("ddpm", chooser).fit(train)
    record = method.validation_
    assert [point["encoding_noise"] for point in record["grid"]] == ["independent", "correlated"]
    assert len(set(record["scores"])) == 2  # each model scored on its own
    assert len(fits) == 2  # one probe for both, then the final fit
    assert method.config.encoding_noise == record["chosen"]["encoding_noise"]
