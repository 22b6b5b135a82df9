from logging.handlers import BufferingHandler

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils import logging as diffusers_logging

from fmri_data.errors import DataError
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.schedulers import sampling_scheduler, training_scheduler
from fmri_diffusion.training.augment import random_shift
from fmri_diffusion.training.objectives import (
    ObjectiveConfig,
    denoising_loss,
    predicted_clean,
    sobel_magnitude,
    ssim,
)


def _call(pipe, seed=0, **kwargs):
    condition = torch.linspace(-1, 1, 15).view(3, 5)
    spatial = torch.zeros(3, 1, 8, 8)
    generators = [torch.Generator().manual_seed(seed + i) for i in range(3)]
    options = {"image_size": 6, "num_inference_steps": 3, "generator": generators} | kwargs
    return pipe(condition, spatial, **options)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_predicted_clean_inverts_the_forward_process(prediction_type):
    scheduler = training_scheduler("cosine", prediction_type)
    clean, noise = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    t = torch.tensor([10, 200, 500, 900])
    noisy = scheduler.add_noise(clean, noise, t)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(clean, noise, t)
    torch.testing.assert_close(predicted_clean(target, noisy, t, scheduler), clean, rtol=1e-3, atol=1e-3)
    loss = denoising_loss(target, clean, noise, noisy, t, scheduler, ObjectiveConfig(edge=1, fft=1, ssim=1))
    assert loss.item() == pytest.approx(0.0, abs=1e-3)


def test_image_space_terms():
    flat = torch.ones(1, 1, 8, 8)
    assert sobel_magnitude(flat)[..., 1:-1, 1:-1].max().item() == pytest.approx(0.0, abs=1e-3)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, torch.rand(2, 1, 16, 16) * 2 - 1).item() < 0.2


def test_min_snr_weighting_downweights_easy_timesteps():
    scheduler = training_scheduler("linear")
    clean, noise = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([5, 5])
    noisy = scheduler.add_noise(clean, noise, t)
    wrong = torch.zeros_like(noise)
    plain = denoising_loss(wrong, clean, noise, noisy, t, scheduler, ObjectiveConfig())
    weighted = denoising_loss(wrong, clean, noise, noisy, t, scheduler, ObjectiveConfig(min_snr_gamma=5.0))
    assert weighted < plain * 0.1  # SNR at t=5 is far above gamma


def test_pixel_samplers_clip_and_latent_samplers_do_not():
    assert sampling_scheduler("ddim", training_scheduler(clip_sample=True)).config.clip_sample
    assert not sampling_scheduler("ddim", training_scheduler()).config.clip_sample


@pytest.mark.parametrize("kind", ["ddim", "dpm++", "ddpm"])
def test_samplers_share_the_trained_schedule_and_round_trip(tmp_path, kind):
    trained = training_scheduler("cosine", "v_prediction")
    sampler = sampling_scheduler(kind, trained)
    expected = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler, "ddpm": DDPMScheduler}[kind]
    assert isinstance(sampler, expected)
    assert sampler.config.prediction_type == "v_prediction"
    np.testing.assert_allclose(sampler.betas.numpy(), trained.betas.numpy())
    sampler.save_pretrained(tmp_path)
    loaded = type(sampler).from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(sampler.config)


def test_pipeline_output_and_guidance_shapes(tiny_pipeline):
    plain = _call(tiny_pipeline)
    guided = _call(tiny_pipeline, guidance_scale=3.0)
    assert plain.shape == guided.shape == (3, 6, 6)
    assert plain.min() >= 0
    assert plain.max() <= 1
    assert not np.allclose(plain, guided)


def test_pipeline_is_deterministic_per_seed(tiny_pipeline):
    np.testing.assert_array_equal(_call(tiny_pipeline, seed=4), _call(tiny_pipeline, seed=4))
    assert not np.allclose(_call(tiny_pipeline, seed=4), _call(tiny_pipeline, seed=5))


def test_img2img_at_low_strength_stays_near_the_init(tiny_pipeline):
    init = torch.rand(3, 6, 6)
    out = _call(tiny_pipeline, init_image=init, strength=0.1)
    free = _call(tiny_pipeline)
    assert np.abs(out - init.numpy()).mean() < np.abs(free - init.numpy()).mean()
    with pytest.raises(ValueError, match="strength"):
        _call(tiny_pipeline, init_image=init, strength=0.0)


def test_residual_decoding_adds_what_sampling_changed_to_the_residual_image(tiny_pipeline):
    init = torch.rand(3, 6, 6)
    grey = torch.full((3, 6, 6), 0.5)
    low = _call(tiny_pipeline, init_image=init, strength=0.1, residual_image=grey)
    high = _call(tiny_pipeline, init_image=init, strength=0.1, residual_image=grey + 0.05)
    unclipped = (low > 1e-4) & (low < 0.95 - 1e-4)
    assert unclipped.mean() > 0.5
    np.testing.assert_allclose((high - low)[unclipped], 0.05, atol=1e-5)  # the image passes through as is
    plain = _call(tiny_pipeline, init_image=init, strength=0.1)
    assert np.abs(low - 0.5).mean() < np.abs(plain - 0.5).mean()  # near the residual image, not the start
    with pytest.raises(ValueError, match="residual_image needs an img2img start"):
        _call(tiny_pipeline, residual_image=grey)


def test_pipeline_save_and_load_give_identical_images(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "pipe" / "conditioner" / "config.json").is_file()
    loaded = FmriImagePipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, DDIMScheduler)
    np.testing.assert_array_equal(_call(loaded), _call(tiny_pipeline))


def test_a_quiet_run_loads_a_saved_pipeline_without_a_bar_or_warning_and_leaves_diffusers_bars_as_they_were(
    tiny_pipeline, tmp_path, capfd
):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    warnings = BufferingHandler(capacity=100)  # diffusers' own handler writes where pytest cannot look
    diffusers_logging.add_handler(warnings)
    try:
        capfd.readouterr()
        parts = FmriImagePipeline.saved_components(tmp_path / "pipe", progress=False)
    finally:
        diffusers_logging.remove_handler(warnings)
    assert "Loading pipeline components" not in capfd.readouterr().err
    assert [record.getMessage() for record in warnings.buffer] == []
    assert isinstance(parts["conditioner"], type(tiny_pipeline.conditioner))
    assert diffusers_logging.is_progress_bar_enabled()  # the library-wide switch is put back
    FmriImagePipeline.saved_components(tmp_path / "pipe", progress=True)
    assert "Loading pipeline components" in capfd.readouterr().err
    diffusers_logging.disable_progress_bar()  # switched off by the user: it stays off
    try:
        FmriImagePipeline.saved_components(tmp_path / "pipe", progress=False)
        assert not diffusers_logging.is_progress_bar_enabled()
    finally:
        diffusers_logging.enable_progress_bar()


def test_the_pipeline_refuses_an_unknown_image_fit_when_it_is_built(tiny_pipeline):
    with pytest.raises(DataError, match="unknown image fit 'stretch'; use pad, resize, smooth"):
        FmriImagePipeline(**{**tiny_pipeline.components, "image_fit": "stretch"})


def test_random_shift_moves_image_and_condition_together():
    image = torch.zeros(2, 1, 8, 8)
    image[:, :, 4, 4] = 1
    shifted = random_shift({"a": image, "b": image.clone()}, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted["a"], shifted["b"])
    assert shifted["a"].sum().item() == 2
