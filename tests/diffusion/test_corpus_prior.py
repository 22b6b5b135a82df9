"""`cvae`, `ddpm` and `ldm` under corpus_finetune: pre-trained once on the screened corpus, each fit starts
there."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from fmri_data.corpora import PriorCorpus
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method, pre_training_notes, reconstruct_over_splits
from fmri_data.methods.records import run_records
from fmri_data.splits import make_splits
from fmri_diffusion.methods.conditional import DiffusionConfig
from fmri_diffusion.methods.corpus_prior import _key, stand_in_condition
from fmri_diffusion.methods.cvae import ConditionalVAEConfig


@pytest.fixture
def dataset(make_linear):
    return make_linear(size=12)


def _corpus(dataset, n=40, seed=0) -> PriorCorpus:
    images = np.random.default_rng(seed).random((n, *dataset.image_shape)).astype(np.float32)
    return PriorCorpus("toy", images).screened(dataset.images[dataset.given_test])


def _primed(dataset, tmp_path, corpus: PriorCorpus | None = None, **options: Any) -> MethodSettings:
    """Quick settings that pre-train on `corpus` (a screened toy one by default) and fine-tune half the
    steps, the prior cached under tmp_path."""
    return MethodSettings(
        device="cpu",
        quick=True,
        cache_dir=tmp_path / "cache",
        prior_corpus=_corpus(dataset) if corpus is None else corpus,
        sampling={"corpus_finetune": 0.5},
        **options,
    )


@pytest.mark.parametrize("name", ["cvae", "ddpm", "ldm"])
def test_a_fit_starts_from_the_prior_trained_once_per_corpus_and_trains_its_share(
    name, dataset, tmp_path, recorded_fits
):
    """The prior trains every stage in full on the corpus; each fit (ldm: its autoencoder too) starts from
    the prior's weights and trains half the steps; a second fit reads the prior from the cache."""
    fits = recorded_fits
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    settings = _primed(dataset, tmp_path)
    first = create_method(name, settings).fit(train)
    autoencoders = {"autoencoder": 2} if name == "ldm" else {}  # the prior's, then the fit's
    assert {stage: len(runs) for stage, runs in fits.items()} == {f"{name} prior": 1, name: 1} | autoencoders
    pairs = [(fits[f"{name} prior"][0], fits[name][0])]
    if name == "ldm":
        pairs.append((fits["autoencoder"][0], fits["autoencoder"][1]))
    for prior, own in pairs:
        assert all(torch.equal(prior.end[key], own.start[key]) for key in prior.end)
        assert any(not torch.equal(prior.start[key], own.start[key]) for key in prior.start)
        assert own.max_steps == prior.max_steps // 2
    assert first.records()["corpus_prior"]["pre_trained"] == "in this fit"
    assert first.records()["corpus_prior"]["corpus"] == "toy"

    second = create_method(name, settings).fit(train)
    assert len(fits[f"{name} prior"]) == 1  # read from the cache, not trained again
    assert second.records()["corpus_prior"] == first.records()["corpus_prior"] | {
        "pre_trained": "from the cache"
    }
    assert all(torch.equal(fits[f"{name} prior"][0].end[k], v) for k, v in fits[name][1].start.items())


@pytest.mark.parametrize("name", ["cvae", "ddpm"])
@pytest.mark.parametrize("refit_steps", [1.0, 0.5])
def test_under_choose_the_probe_pre_trains_and_the_final_fit_starts_from_the_prior_or_the_probe(
    name, refit_steps, dataset, tmp_path, recorded_fits
):
    """The probe pre-trains (and caches) the prior and trains its share; the final fit then reads the prior
    from the cache, or (refit_steps below 1) starts from the probe and trains refit_steps of the steps."""
    fits = recorded_fits
    settings = _primed(dataset, tmp_path, choices={"likelihood_weight": (0.0,)}, refit_steps=refit_steps)
    method = create_method(name, settings).fit(dataset.subset(np.flatnonzero(~dataset.given_test)))
    (prior,) = fits[f"{name} prior"]
    probe, final = fits[name]
    assert all(torch.equal(prior.end[key], probe.start[key]) for key in prior.end)
    assert probe.max_steps == prior.max_steps // 2
    started = prior if refit_steps == 1 else probe
    assert all(torch.equal(started.end[key], final.start[key]) for key in started.end)
    assert final.max_steps == prior.max_steps // 2
    record = method.records()["corpus_prior"]
    assert record["pre_trained"] == ("from the cache" if refit_steps == 1 else "via the validation probe")
    assert record["step_fraction"] == 0.5
    start = {"start": "probe", "step_fraction": 0.5} if refit_steps < 1 else None
    assert method.validation_.get("final_fit") == start


def test_the_prior_does_not_depend_on_how_the_method_samples(dataset):
    settings = MethodSettings(device="cpu", quick=True, prior_corpus=_corpus(dataset))
    keys = set()
    how = {"likelihood_weight": 1.0, "corpus_finetune": 0.5, "n_samples": 3, "encoding_noise": "correlated"}
    for sampling in ({}, how):
        method = create_method("ldm", replace(settings, sampling=sampling))
        method.image_size_ = 12
        keys.add(_key(method))
    method = create_method("ldm", replace(settings, ema=False))
    method.image_size_ = 12
    assert len(keys) == 1
    assert _key(method) not in keys  # no EMA changes the weights a prior learns


def test_a_cvae_prior_is_kept_per_network_size_not_per_ridge_folds_or_condition_readout(dataset):
    settings = MethodSettings(device="cpu", quick=True, prior_corpus=_corpus(dataset))

    def key(**sampling: Any) -> str:
        method = create_method("cvae", replace(settings, sampling=sampling))
        method.image_size_ = 12
        return _key(method)

    assert key() == key(ridge_folds=3, likelihood_weight=0.1, corpus_finetune=0.5)
    assert key() == key(condition_readout="patches")
    assert key() == key(encoding_noise="correlated")
    assert len({key(), key(latent_dim=32), key(width=32)}) == 3


def test_a_cvae_prior_is_cached_as_safetensors(dataset, tmp_path):
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    method = create_method("cvae", _primed(dataset, tmp_path)).fit(train)
    folder = tmp_path / "cache" / method.records()["corpus_prior"]["key"]
    assert sorted(path.suffix for path in folder.rglob("*") if path.is_file()) == [".json", ".safetensors"]


def test_the_prior_is_cached_by_corpus_content_and_refuses_an_unscreened_corpus(dataset, tmp_path):
    train = dataset.subset(np.flatnonzero(~dataset.given_test))

    def fit(corpus: PriorCorpus) -> dict[str, Any]:
        return create_method("ddpm", _primed(dataset, tmp_path, corpus)).fit(train).records()["corpus_prior"]

    one, other = fit(_corpus(dataset, seed=0)), fit(_corpus(dataset, seed=1))
    assert one["key"] != other["key"]
    assert other["pre_trained"] == "in this fit"
    unscreened = PriorCorpus("toy", _corpus(dataset).images)
    with pytest.raises(DataError, match="not screened"):
        fit(unscreened)


def test_without_corpus_finetune_nothing_pre_trains_and_a_bad_fraction_is_refused(dataset, tmp_path):
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    settings = MethodSettings(
        device="cpu", quick=True, cache_dir=tmp_path / "cache", prior_corpus=_corpus(dataset)
    )
    method = create_method("ddpm", settings).fit(train)
    assert "corpus_prior" not in method.records()
    assert len(method.training_.losses) == method.config.training.max_steps
    assert not (tmp_path / "cache").exists()
    with pytest.raises(DataError, match="corpus_finetune"):
        replace(DiffusionConfig(), corpus_finetune=1.5)
    with pytest.raises(DataError, match="corpus_finetune"):
        ConditionalVAEConfig(corpus_finetune=-0.25)


def test_the_stand_in_condition_runs_from_the_image_itself_to_noise_alone():
    clean = torch.linspace(-1, 1, 4 * 64).reshape(4, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    stand_in = stand_in_condition(clean.repeat(500, 1, 1, 1), 0.0, 1.0, generator).reshape(500, 4, -1)
    correlations = [np.corrcoef(row.flatten(), clean[0].flatten())[0, 1] for row in stand_in[:, 0]]
    assert max(correlations) > 0.99  # level near 0: nearly the image
    assert min(correlations) < 0.1  # level near 1: nearly noise alone
    assert stand_in.shape == (500, 4, 64)


def test_metrics_and_the_report_say_where_each_fit_started(dataset, tmp_path):
    settings = _primed(dataset, tmp_path)
    result = reconstruct_over_splits(
        dataset, make_splits(dataset, "given"), ["mean", "ddpm"], settings=settings, progress=False
    )
    (fold,) = run_records(result)["pre_training"]["ddpm"]
    assert fold == {
        "fold": 0,
        "corpus": "toy",
        "key": fold["key"],
        "pre_trained": "in this fit",
        "step_fraction": 0.5,
    }
    assert (tmp_path / "cache" / fold["key"] / "model_index.json").is_file()
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [fold["key"]]  # checkpoints gone
    assert pre_training_notes(result.records) == [
        f"ddpm: pre-trained on the prior corpus toy ({fold['key']}); each fold's fit started there and "
        "trained 50% of each stage's steps"
    ]
