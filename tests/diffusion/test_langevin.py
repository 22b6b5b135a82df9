"""Likelihood guidance for a one-pass sampler by its latent's gradient: Metropolis-adjusted Langevin chains,
and the cvae that runs them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings
from fmri_data.methods.registry import check_stimuli
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.cvae import ConditionalVAE, ConditionalVAEConfig
from fmri_diffusion.methods.langevin import mala, tempered_latent_posterior
from fmri_encoders.encoding import GaussianLikelihood
from fmri_encoders.training import TrainingConfig


def _generators(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_chains_reach_the_tempered_posterior_of_a_linear_gaussian_model():
    """A latent decoded linearly into pixels seen through a linear encoding model: the tempered posterior
    is Gaussian with a known mean and covariance, which the chains' spread must match."""
    rng = np.random.default_rng(0)
    latent, pixels, voxels, weight = 2, 6, 5, 0.5
    to_pixels = torch.from_numpy(rng.normal(size=(latent, pixels)).astype(np.float32))
    coef = rng.normal(size=(pixels, voxels)).astype(np.float32)
    intercept = rng.normal(size=voxels).astype(np.float32)
    noise_variance = rng.uniform(0.5, 2.0, voxels).astype(np.float32)
    likelihood = GaussianLikelihood(coef, intercept, noise_variance)
    measured = torch.from_numpy(rng.normal(size=voxels).astype(np.float32))
    chains = 3000
    posterior = tempered_latent_posterior(
        lambda z: (z @ to_pixels).view(len(z), 2, 3), likelihood, measured.expand(chains, -1), weight
    )
    start = torch.randn(chains, latent, generator=torch.Generator().manual_seed(1))
    z, acceptance = mala(posterior, start, steps=150, step_size=0.3, generators=_generators(chains))

    to_voxels = to_pixels.double().numpy() @ coef
    precision_of_voxels = weight / noise_variance
    precision = np.eye(latent) + (to_voxels * precision_of_voxels) @ to_voxels.T
    covariance = np.linalg.inv(precision)
    mean = covariance @ (to_voxels * precision_of_voxels) @ (measured.numpy() - intercept)
    assert 0.3 < acceptance.mean() < 1.0  # the correction is at work, and chains still move
    np.testing.assert_allclose(z.mean(dim=0).numpy(), mean, atol=0.05 + 0.1 * np.abs(mean).max())
    np.testing.assert_allclose(np.cov(z.numpy().T), covariance, atol=0.15 * np.abs(covariance).max())


def test_a_chain_does_not_depend_on_its_batch_and_a_step_size_must_be_positive():
    def density(z):
        return -0.5 * ((z - 1.0) ** 2).sum(dim=1) / 0.3

    start = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    together, _ = mala(density, start, steps=20, step_size=0.2, generators=_generators(6))
    first, _ = mala(density, start[:2], steps=20, step_size=0.2, generators=_generators(2))
    rest, _ = mala(density, start[2:], steps=20, step_size=0.2, generators=_generators(4, seed=2))
    torch.testing.assert_close(together, torch.cat([first, rest]))
    assert not torch.allclose(together, start)
    unmoved, acceptance = mala(density, start, steps=0, step_size=0.2, generators=_generators(6))
    torch.testing.assert_close(unmoved, start)
    assert (acceptance == 0).all()
    with pytest.raises(ValueError, match="step size must be above 0"):
        mala(density, start, steps=5, step_size=0.0, generators=_generators(6))


def test_the_cvae_s_chains_explain_the_voxels_better_than_its_prior_draws_and_reload(linear_split, tmp_path):
    train, test = linear_split
    settings = MethodSettings(device="cpu", seed=2, work_dir=tmp_path / "chains", progress=False)
    config = ConditionalVAEConfig(
        n_samples=4,
        likelihood_weight=1.0,
        langevin_steps=30,
        langevin_step_size=0.15,
        training=TrainingConfig(max_steps=10, batch_size=16, ema_decay=None, progress=False),
    )
    guided = ConditionalVAE(settings, config).fit(train)
    assert guided.steers_steps()
    assert guided.importance_temper() == 0.0  # the chains' samples count alike
    reloaded = load_method(tmp_path / "chains" / "cvae" / "model", settings)
    assert (reloaded.config.langevin_steps, reloaded.config.langevin_step_size) == (30, 0.15)
    np.testing.assert_allclose(reloaded.predict(test.fmri), guided.predict(test.fmri), atol=1e-5)

    # a net trained this briefly on so few images leaves z unused; a decoder that reads z, linearly, gives
    # the chains something to move
    mixing = torch.randn(guided.model_.config.latent_dim, 64, generator=torch.Generator().manual_seed(3))
    guided.model_.decode_logits = lambda z, _features: (z @ mixing).view(len(z), 1, 8, 8)
    chains = guided.sample(test.fmri, 4)
    guided.config = replace(config, langevin_steps=0)
    assert not guided.steers_steps()
    prior_draws = guided.sample(test.fmri, 4)
    likelihood = guided.encoding_.likelihood()
    measured = torch.from_numpy(guided.encoding_.measured(test.fmri))

    def nll(samples):
        return torch.stack([likelihood(torch.from_numpy(s), measured) for s in samples]).mean().item()

    assert nll(chains) < 0.85 * nll(prior_draws)
    guided.config = replace(config, likelihood_weight=0.0)  # no likelihood: the steps have nothing to follow
    np.testing.assert_array_equal(guided.sample(test.fmri, 4), prior_draws)


@pytest.mark.parametrize(
    ("sampling", "choices", "fix"),
    [
        ({"langevin_steps": 25}, {}, "add --likelihood-weight 0.3, or leave out --langevin-steps"),
        (
            {"langevin_steps": 25, "likelihood_weight": 0.3},
            {"likelihood_weight": (0.0,)},  # the grid's values replace the option's
            "offer a value above 0 in --choose likelihood_weight, or leave out --langevin-steps",
        ),
        (
            {},
            {"langevin_steps": (0, 25)},
            "add --likelihood-weight 0.3, or leave out --choose langevin_steps",
        ),
        ({"langevin_steps": 25}, {"likelihood_weight": (0.0, 0.3)}, None),  # validation may choose it
        ({"likelihood_weight": 0.3}, {"langevin_steps": (0, 25)}, None),
    ],
)
def test_chains_without_a_likelihood_to_follow_are_refused_before_any_fold_trains(
    linear_dataset, tmp_path, sampling, choices, fix
):
    settings = MethodSettings(quick=True, work_dir=tmp_path, sampling=sampling, choices=choices)
    if fix is None:
        check_stimuli(["cvae"], settings, linear_dataset)
        return
    with pytest.raises(
        DataError, match="cvae: langevin_steps moves each draw along the likelihood's gradient"
    ) as error:
        check_stimuli(["cvae"], settings, linear_dataset)
    assert str(error.value).endswith(fix)
    assert list(tmp_path.iterdir()) == []


def test_the_chain_settings_are_checked_and_chosen_at_sampling_time():
    for bad in ({"langevin_steps": -1}, {"langevin_step_size": 0.0}):
        with pytest.raises(DataError, match="langevin_steps must be 0 or more"):
            ConditionalVAEConfig(**bad)
    assert {"langevin_steps", "langevin_step_size"} <= ConditionalVAE.sampling_settings
