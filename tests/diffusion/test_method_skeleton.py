"""What every diffusion method gets from the one skeleton: --samples, reloading, seeds, the cache."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods.base import DiffusionMethod, load_method, sample_generators
from fmri_diffusion.methods.stable import SDDirect, StableConfig
from fmri_diffusion.priors import base_model_for, small
from fmri_diffusion.priors.cache import BaseModelCache
from fmri_diffusion.priors.small import SmallBaseConfig
from fmri_encoders.contrastive.training import DEFAULT_TRAINING as CONTRASTIVE_TRAINING
from fmri_encoders.methods.mlp import DEFAULT_TRAINING as MLP_TRAINING
from fmri_encoders.runtime import derived_seed
from fmri_encoders.training import TrainingConfig, training_for

STOCHASTIC = ["ddpm", "ldm", "cvae", "sd-direct", "sd-lora", "sd-full", "sd-control", "brain-diffuser"]


def split(dataset):
    return dataset.subset(np.flatnonzero(~dataset.given_test)), dataset.subset(
        np.flatnonzero(dataset.given_test)
    )


@pytest.mark.parametrize("name", STOCHASTIC)
def test_samples_reach_every_stochastic_method(linear_dataset, tmp_path, monkeypatch, name):
    train, test = split(linear_dataset)
    settings = MethodSettings(
        device="cpu", quick=True, seed=1, cache_dir=tmp_path / "cache", sampling={"n_samples": 3}
    )
    method = create_method(name, settings)
    assert isinstance(method, DiffusionMethod)
    assert method.config.n_samples == 3
    drawn = []
    draw = method.draw
    monkeypatch.setattr(
        method, "draw", lambda inputs, generators: drawn.append(len(generators)) or draw(inputs, generators)
    )
    rows = method.fit(train).predict_named(test.fmri)
    assert sum(drawn) == 3 * test.n_trials  # three samples of every trial, each with its own generator
    assert set(rows) == {name, f"{name}-1"}
    assert all(images.shape == test.images.shape for images in rows.values())


@pytest.mark.parametrize("name", ["ddpm", "ldm", "cvae", "sd-control", "brain-diffuser-stage1"])
def test_a_fitted_method_reloads_from_its_folder_to_the_same_images(linear_dataset, tmp_path, name):
    train, test = split(linear_dataset)
    settings = MethodSettings(
        device="cpu", quick=True, seed=2, work_dir=tmp_path / "w", cache_dir=tmp_path / "cache"
    )
    fitted = create_method(name, settings).fit(train)
    reloaded = load_method(tmp_path / "w" / name / fitted.saved_as, settings)
    assert type(reloaded) is type(fitted)
    expected = fitted.predict_named(test.fmri)
    for row, images in reloaded.predict_named(test.fmri).items():
        np.testing.assert_allclose(images, expected[row], atol=1e-5)


def test_a_folder_without_a_manifest_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"no method\.json"):
        load_method(tmp_path)


def test_sample_generators_differ_per_sample_and_trial_and_repeat():
    first = [g.initial_seed() for g in sample_generators(0, 2, 3)]
    assert len(set(first)) == 6
    assert first == [g.initial_seed() for g in sample_generators(0, 2, 3)]
    assert first[:3] == [g.initial_seed() for g in sample_generators(0, 1, 3)]  # k-major: more samples add
    assert not set(first) & {g.initial_seed() for g in sample_generators(1, 2, 3)}


def test_the_small_base_pre_trains_once_per_cache_folder(tmp_path, monkeypatch):
    calls = []
    pretrain = small.pretrain_small_base

    def counted(*args, **kwargs):
        calls.append(1)
        return pretrain(*args, **kwargs)

    monkeypatch.setattr("fmri_diffusion.priors.pretrain_small_base", counted)
    settings = MethodSettings(device="cpu", quick=True)
    config = SmallBaseConfig().quick()
    first = base_model_for(settings, config, 8, BaseModelCache(tmp_path))
    again = base_model_for(settings, config, 8, BaseModelCache(tmp_path))
    assert len(calls) == 1
    assert first.source == again.source == str(tmp_path / config.key(8, 0))
    assert first.unet is not again.unet  # each fit gets its own copy to fine-tune
    base_model_for(settings, config, 8, BaseModelCache(None))
    assert len(calls) == 2  # without a folder nothing is kept


def test_derived_seeds_are_pinned_so_that_published_samples_repeat():
    # SeedSequence's output is fixed by numpy's specification: a change here changes every reported sample
    assert derived_seed(0, 0, 0) == 7896617691693857887
    assert derived_seed(0, 1) == 2918264622725855778
    assert sample_generators(5, 1, 1)[0].initial_seed() == derived_seed(5, 0, 0)


def test_a_reloaded_method_samples_as_it_was_run_even_under_quick(linear_dataset, tmp_path):
    train, _ = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path, sampling={"n_samples": 3})
    create_method("cvae", settings).fit(train)
    quick = MethodSettings(device="cpu", quick=True)  # whose budget alone would sample twice
    assert load_method(tmp_path / "cvae" / "model", quick).config.n_samples == 3
    told = MethodSettings(device="cpu", quick=True, sampling={"n_samples": 5})
    assert load_method(tmp_path / "cvae" / "model", told).config.n_samples == 5


def test_an_fmri_conditioned_fine_tune_reloads_as_one(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "w", cache_dir=tmp_path / "cache")
    fitted = SDDirect(settings, replace(StableConfig(), condition="fmri")).fit(train)
    reloaded = load_method(tmp_path / "w" / "sd-direct" / "finetuned", settings)
    assert reloaded.config.condition == "fmri"
    np.testing.assert_allclose(reloaded.predict(test.fmri), fitted.predict(test.fmri), atol=1e-5)


def test_a_run_s_numerics_reach_every_stage_and_the_base_model_s_cache_key():
    settings = MethodSettings(mixed_precision="bf16", gradient_accumulation_steps=4, optimizer="adafactor")
    config = SmallBaseConfig()
    under = config.under(settings)
    for training in (under.autoencoder.training, under.unet_training):
        assert (training.mixed_precision, training.gradient_accumulation_steps) == ("bf16", 4)
        assert training.optimizer == "adafactor"
    assert under.key(8, 0) != config.key(8, 0)  # a bf16 base is not an fp32 run's
    assert config.under(MethodSettings()) == config
    stage = training_for(TrainingConfig(), settings)
    assert (stage.mixed_precision, stage.gradient_accumulation_steps, stage.optimizer) == (
        "bf16",
        4,
        "adafactor",
    )
    assert stage.ema_decay == TrainingConfig().ema_decay is not None


def test_a_run_s_micro_batch_reaches_every_stage_counted_in_steps():
    settings = MethodSettings(batch_size=1, gradient_accumulation_steps=32)
    config = SmallBaseConfig()
    under = config.under(settings)
    assert under.autoencoder.training.batch_size == under.unet_training.batch_size == 1
    assert under.key(8, 0) != config.key(8, 0)
    assert training_for(TrainingConfig(batch_size=32), settings).batch_size == 1
    assert training_for(CONTRASTIVE_TRAINING, settings).batch_size == CONTRASTIVE_TRAINING.batch_size > 1
    assert training_for(MLP_TRAINING, settings).batch_size == MLP_TRAINING.batch_size > 1


def test_a_run_s_share_of_the_steps_reaches_every_stage_counted_in_steps_and_a_probe_s_share_compounds_it():
    settings = MethodSettings(train_steps=0.5)
    config = SmallBaseConfig()
    under = config.under(settings)
    assert under.autoencoder.training.max_steps == round(config.autoencoder.training.max_steps * 0.5)
    assert under.unet_training.max_steps == round(config.unet_training.max_steps * 0.5)
    assert under.key(8, 0) != config.key(8, 0)  # a base trained half as long is another base
    stage = training_for(TrainingConfig(max_steps=1500, warmup_steps=100), settings)
    assert (stage.max_steps, stage.warmup_steps) == (750, 50)
    assert training_for(TrainingConfig(max_steps=3), MethodSettings(train_steps=0.01)).max_steps == 1
    assert training_for(CONTRASTIVE_TRAINING, settings).max_steps == CONTRASTIVE_TRAINING.max_steps
    assert training_for(MLP_TRAINING, settings).max_steps == MLP_TRAINING.max_steps
    method = create_method("ldm", settings)
    method.step_fraction = 0.5  # a probe's share multiplies the run's
    assert method.training(TrainingConfig(max_steps=1000)).max_steps == 250
    for nonsense in (0, -1, float("inf"), float("nan")):
        with pytest.raises(DataError, match="train_steps must be a number above 0"):
            MethodSettings(train_steps=nonsense)


def test_no_ema_reaches_every_stage_and_the_base_model_s_cache_key():
    config = SmallBaseConfig()
    under = config.under(MethodSettings(ema=False))
    assert under.autoencoder.training.ema_decay is None
    assert under.unet_training.ema_decay is None
    assert under.key(8, 0) != config.key(8, 0)
    assert training_for(TrainingConfig(ema_decay=0.99), MethodSettings(ema=False)).ema_decay is None


@pytest.mark.parametrize("name", ["cvae", "ddpm", "ldm", "sd-lora"])
def test_first_stage_ridges_fit_on_the_gpu_where_the_run_does(monkeypatch, name):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for device, backend in [("cuda", "torch_cuda"), ("cpu", "numpy")]:
        method = create_method(name, MethodSettings(device=device, seed=3))
        assert method.ridge_options() == {"seed": 3, "backend": backend}
