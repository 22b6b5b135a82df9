"""Likelihood guidance for a one-pass sampler: importance weights, their rows, and the cvae that uses them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.cvae import ConditionalVAE, ConditionalVAEConfig
from fmri_diffusion.methods.reweighting import importance_weights, weighted_rows
from fmri_encoders.encoding import EncodingModel
from fmri_encoders.training import TrainingConfig


def effective_sample_size(weights):
    """How many equally weighted samples normalised weights [K, n] are worth, per trial."""
    return 1.0 / (weights**2).sum(axis=0)


def _encoded_toy(n_stimuli=12, size=5, voxels=40, noise=0.05, seed=0):
    """Random images seen through a known linear map; an encoding model fitted on them."""
    rng = np.random.default_rng(seed)
    images = rng.random((n_stimuli, size, size)).astype(np.float32)
    weights = rng.normal(size=(size * size, voxels)).astype(np.float32)
    fmri = images.reshape(n_stimuli, -1) @ weights + noise * rng.normal(size=(n_stimuli, voxels))
    encoding = EncodingModel(n_voxels=voxels, kind="ridge").fit(images, fmri, np.arange(n_stimuli))
    return images, fmri.astype(np.float32), encoding


def test_weights_are_a_softmax_of_the_tempered_log_likelihood():
    _images, fmri, encoding = _encoded_toy()
    rng = np.random.default_rng(1)
    samples = rng.random((4, 3, 5, 5)).astype(np.float32)
    weights = importance_weights(samples, fmri[:3], encoding, 1e-3)
    predicted = samples.reshape(4, 3, -1) @ encoding.coef_ + encoding.intercept_
    nll = 0.5 * (((encoding.measured(fmri[:3]) - predicted) ** 2) / encoding.noise_variance_).sum(-1)
    expected = np.exp(-1e-3 * (nll - nll.min(0)))
    assert (effective_sample_size(expected / expected.sum(0)) > 1.5).all()  # not one-hot: the values count
    np.testing.assert_allclose(weights, expected / expected.sum(0), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(importance_weights(samples, fmri[:3], encoding, 0.0), 0.25)


def test_a_strong_likelihood_picks_the_sample_that_explains_the_voxels():
    images, fmri, encoding = _encoded_toy()
    rng = np.random.default_rng(2)
    samples = rng.random((5, 4, 5, 5)).astype(np.float32)
    truth_at = np.array([3, 0, 4, 1])
    samples[truth_at, np.arange(4)] = images[:4]  # each trial's own image hides among random ones
    weights = importance_weights(samples, fmri[:4], encoding, 1.0)
    np.testing.assert_array_equal(weights.argmax(axis=0), truth_at)
    assert effective_sample_size(weights) == pytest.approx(np.ones(4), abs=1e-3)
    mean, one = weighted_rows(samples, weights, seed=0)
    np.testing.assert_allclose(mean, images[:4], atol=1e-3)
    np.testing.assert_array_equal(one, images[:4])


def test_uniform_weights_give_the_plain_mean_and_draws_follow_the_weights():
    samples = np.random.default_rng(3).random((6, 2, 3, 3)).astype(np.float32)
    mean, _ = weighted_rows(samples, np.full((6, 2), 1 / 6), seed=0)
    np.testing.assert_allclose(mean, samples.mean(axis=0), rtol=1e-6)
    only_second = np.zeros((6, 2))
    only_second[1] = 1.0
    _, one = weighted_rows(samples, only_second, seed=4)
    np.testing.assert_array_equal(one, samples[1])
    trials = np.arange(400, dtype=np.float32)[None, :, None, None] + np.zeros((2, 400, 1, 1), np.float32)
    trials[1] += 0.5  # sample k of trial i holds i + k / 2, so each draw says which sample it took
    _, drawn = weighted_rows(trials, np.full((2, 400), 0.5), seed=5)
    assert 0.4 < (drawn[:, 0, 0] % 1 == 0.5).mean() < 0.6  # half and half, not always the heavier


WEIGHT = (
    300.0  # the toy's quickly trained net draws near-identical samples: only a sharp likelihood splits them
)


def test_the_cvae_weighs_its_samples_and_reloads_to_the_same_rows(linear_split, tmp_path):
    train, test = linear_split
    settings = MethodSettings(device="cpu", seed=2, work_dir=tmp_path / "weighted", progress=False)
    config = ConditionalVAEConfig(
        n_samples=6, training=TrainingConfig(max_steps=60, batch_size=16, ema_decay=None, progress=False)
    )
    plain = ConditionalVAE(replace(settings, work_dir=tmp_path / "plain"), config).fit(train)
    weighted = ConditionalVAE(settings, replace(config, likelihood_weight=WEIGHT)).fit(train)
    assert plain.encoding_ is None
    assert weighted.encoding_ is not None
    samples = weighted.sample(test.fmri, 6)
    np.testing.assert_array_equal(samples, plain.sample(test.fmri, 6))  # the same net, the same draws
    weights = importance_weights(samples, test.fmri, weighted.encoding_, WEIGHT)
    assert effective_sample_size(weights).min() < 5.5  # the likelihood tells these samples apart
    rows = weighted.predict_named(test.fmri)
    np.testing.assert_allclose(rows["cvae"], np.einsum("kn,knhw->nhw", weights, samples), atol=1e-6)
    np.testing.assert_allclose(plain.predict(test.fmri), samples.mean(axis=0), atol=1e-6)
    for i, one in enumerate(rows["cvae-1"]):  # one of the trial's own samples
        assert any(np.array_equal(one, sample) for sample in samples[:, i])
    reloaded = load_method(tmp_path / "weighted" / "cvae" / "model", settings)
    assert reloaded.config.likelihood_weight == WEIGHT
    for name, images in reloaded.predict_named(test.fmri).items():
        np.testing.assert_allclose(images, rows[name], atol=1e-6)
    told = replace(settings, sampling={"likelihood_weight": 1.0})
    with pytest.raises(DataError, match="without an encoding model"):
        load_method(tmp_path / "plain" / "cvae" / "model", told)


@pytest.mark.parametrize("setting", ["likelihood_weight", "sample_weight"])
def test_brain_diffuser_stage1_has_nothing_to_weigh(setting):
    settings = MethodSettings(device="cpu", quick=True, sampling={setting: 1.0})
    method = create_method("brain-diffuser-stage1", settings)
    assert getattr(method.config, setting) == 1.0
    assert not method.steers()
    assert method.importance_temper() == 0.0
    assert not method.needs_encoding()


def test_a_pipeline_weighs_its_samples_and_validation_weighs_one_set_of_samples_each_way(
    make_linear, tmp_path, monkeypatch
):
    dataset = make_linear(size=12)  # SSIM, half of the validation score, needs 11 px
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    test = dataset.subset(np.flatnonzero(dataset.given_test))
    settings = MethodSettings(device="cpu", quick=True, seed=1, work_dir=tmp_path / "w", progress=False)
    weighted = create_method("ddpm", replace(settings, sampling={"sample_weight": WEIGHT})).fit(train)
    assert not weighted.steers()  # no guidance: the encoding model is fitted to weigh the samples alone
    assert weighted.encoding_ is not None
    samples = weighted.sample(test.fmri, weighted.config.n_samples)
    weights = importance_weights(samples, test.fmri, weighted.encoding_, WEIGHT)
    assert effective_sample_size(weights).min() < weighted.config.n_samples - 0.5
    np.testing.assert_allclose(
        weighted.predict(test.fmri), np.einsum("kn,knhw->nhw", weights, samples), atol=1e-6
    )
    reloaded = load_method(tmp_path / "w" / "ddpm" / "pipeline", settings)
    assert reloaded.config.sample_weight == WEIGHT
    np.testing.assert_allclose(reloaded.predict(test.fmri), weighted.predict(test.fmri), atol=1e-6)

    passes = []
    sample = type(weighted).sample
    monkeypatch.setattr(type(weighted), "sample", lambda self, *a: passes.append(1) or sample(self, *a))
    chooser = replace(settings, work_dir=tmp_path / "c", choices={"sample_weight": (0.0, 1.0, WEIGHT)})
    record = create_method("ddpm", chooser).fit(train).validation_
    assert [point["sample_weight"] for point in record["grid"]] == [0.0, 1.0, WEIGHT]
    assert len(set(record["scores"])) == 3  # each weighing scored on its own
    assert len(passes) == 1  # validation sampled once; the final fit sampled nothing yet
