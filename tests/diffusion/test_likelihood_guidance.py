"""Encoding-model guidance: its gradient, its effect, and its wiring through every pipeline route."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_data.methods.registry import check_stimuli
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.schedulers import predicted_clean
from fmri_encoders.encoding import GaussianLikelihood

IMAGE = 6


def _likelihood(seed=0, voxels=12):
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=(IMAGE * IMAGE, voxels)).astype(np.float32)
    return GaussianLikelihood(coef, np.zeros(voxels, np.float32), np.ones(voxels, np.float32))


def _inputs(batch=3):
    condition = torch.linspace(-1, 1, 5 * batch).view(batch, 5)
    return condition, torch.zeros(batch, 1, 8, 8)


def test_the_guidance_gradient_matches_a_finite_difference(tiny_pipeline):
    """d/dx of NLL/sqrt(NLL) = 2 d sqrt(NLL)/dx, the NLL taken at the clean image the UNet implies at x."""
    pipe, likelihood = tiny_pipeline, _likelihood()
    condition, spatial = _inputs(1)
    tokens = pipe.conditioner(condition)
    measured = torch.randn(1, 12) * 3
    pipe.scheduler.set_timesteps(10)
    t = pipe.scheduler.timesteps[5]
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)

    def root_nll(sample):
        out = pipe.unet(torch.cat([sample, spatial], 1), t, encoder_hidden_states=tokens).sample
        clean = pipe.from_model_space(predicted_clean(out, sample, t, pipe.scheduler), IMAGE, clip=False)
        return likelihood(clean, measured).sqrt().sum()

    with torch.enable_grad():
        out = pipe.unet(torch.cat([x, spatial], 1), t, encoder_hidden_states=tokens).sample
        gradient = pipe._likelihood_gradient(likelihood, measured, out, x, t, IMAGE)
    direction = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    step = 1e-2
    with torch.no_grad():
        numeric = (root_nll(x + step * direction) - root_nll(x - step * direction)) / (2 * step)
    assert (gradient * direction).sum().item() == pytest.approx(2 * numeric.item(), rel=0.05)


def test_guidance_moves_samples_towards_the_measured_pattern(tiny_pipeline):
    """Under an exact prior (pixels ~ N(0, I), whose optimal noise prediction is sqrt(1 - a_t) x_t), the
    pull of a noisy linear measurement brings the samples to the images that made it."""
    pipe = tiny_pipeline
    alphas = pipe.scheduler.alphas_cumprod

    def gaussian_prior(sample, timestep, encoder_hidden_states=None, **_):
        return SimpleNamespace(sample=(1 - alphas[timestep]).sqrt() * sample[:, :1])

    pipe.unet.forward = gaussian_prior
    likelihood = _likelihood(voxels=48)
    condition, spatial = _inputs()
    target = torch.rand(3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(4))
    noise = torch.randn(3, 48, generator=torch.Generator().manual_seed(5))
    measured = target.flatten(1) @ likelihood.coef + noise

    def sampled(weight):
        return pipe(
            condition,
            spatial,
            image_size=IMAGE,
            num_inference_steps=8,
            generator=[torch.Generator().manual_seed(i) for i in range(3)],
            likelihood=likelihood,
            measured=measured,
            likelihood_weight=weight,
            output_type="pt",
        )

    free, guided = sampled(0.0), sampled(0.3)
    assert likelihood(guided, measured).mean() < 0.25 * likelihood(free, measured).mean()
    assert ((guided - target) ** 2).mean() < 0.5 * ((free - target) ** 2).mean()


def test_a_weight_without_a_likelihood_is_refused(tiny_pipeline):
    condition, spatial = _inputs()
    with pytest.raises(ValueError, match="likelihood"):
        tiny_pipeline(condition, spatial, image_size=IMAGE, likelihood_weight=1.0)


@pytest.mark.parametrize(
    ("name", "sampling", "choices", "fix"),
    [
        ("ddpm", {"encoding_model": "prf", "sample_weight": 0.5}, {}, "use --encoding-model ridge or auto"),
        ("sd-lora", {"encoding_model": "prf"}, {"likelihood_weight": (0.0, 0.5)}, "use --encoding-model"),
        (
            "cvae",
            {"likelihood_weight": 0.3},
            {"encoding_model": ("ridge", "prf")},
            "drop prf from --choose encoding_model",
        ),
    ],
)
def test_an_encoding_model_of_prfs_without_the_patch_design_is_refused_before_any_fold_trains(
    linear_dataset, tmp_path, name, sampling, choices, fix
):
    settings = MethodSettings(quick=True, work_dir=tmp_path, sampling=sampling, choices=choices)
    assert check_stimuli([name], settings, linear_dataset) is None  # its binary 8 x 8 images are patches
    with pytest.raises(
        DataError, match=f"{name}: encoding model prf needs K x K binary-patch stimuli.*{fix}"
    ):
        check_stimuli([name], settings, _grey(linear_dataset))
    assert list(tmp_path.iterdir()) == []


def test_an_encoding_model_of_prfs_that_nothing_uses_passes_the_check(linear_dataset, tmp_path):
    settings = MethodSettings(quick=True, work_dir=tmp_path, sampling={"encoding_model": "prf"})
    check_stimuli(["ddpm"], settings, _grey(linear_dataset))  # no likelihood guides or weighs by it


def _grey(dataset):
    """The stimuli as grey levels: no K x K binary-patch design."""
    grey = np.random.default_rng(3).uniform(0.2, 0.8, dataset.images.shape).astype(np.float32)
    return replace(dataset, images=grey)


@pytest.mark.parametrize("name", ["ddpm", "ldm", "sd-lora", "brain-diffuser"])
def test_every_pipeline_route_samples_with_guidance_and_reloads_with_it(linear_split, tmp_path, name):
    train, test = linear_split
    settings = MethodSettings(
        device="cpu",
        quick=True,
        work_dir=tmp_path / "w",
        cache_dir=tmp_path / "cache",
        sampling={"likelihood_weight": 1.0},
    )
    method = create_method(name, settings).fit(train)
    assert method.steers()
    assert method.encoding_ is not None
    seen = {}
    call = method.pipeline_.__class__.__call__

    def spy(pipe, *args, **kwargs):
        seen.update(weight=kwargs.get("likelihood_weight"), measured=kwargs.get("measured"))
        return call(pipe, *args, **kwargs)

    method.pipeline_.__class__.__call__ = spy
    try:
        rows = method.predict_named(test.fmri)
    finally:
        method.pipeline_.__class__.__call__ = call
    assert seen["weight"] == 1.0
    assert seen["measured"].shape[-1] == len(method.encoding_.voxels_)
    assert rows[name].shape == test.images.shape
    reloaded = load_method(tmp_path / "w" / name / method.saved_as, settings)
    np.testing.assert_allclose(reloaded.predict(test.fmri), rows[name], atol=1e-5)
    scoped = replace(settings, sampling={f"{name}:n_samples": 3, "other:n_samples": 5})  # its own key only
    assert load_method(tmp_path / "w" / name / method.saved_as, scoped).config.n_samples == 3
