from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.conditional import DiffusionConfig
from fmri_diffusion.methods.ddpm import PixelDDPM
from fmri_diffusion.methods.ldm import LatentDiffusion, LDMConfig
from fmri_diffusion.training.autoencoder import AutoencoderConfig
from fmri_encoders.training import TrainingConfig


def _toy(n_stimuli=20, repeats=2, size=12, n_voxels=40, seed=0):
    rng = np.random.default_rng(seed)
    stimuli = np.zeros((n_stimuli, size, size), np.float32)
    for image in stimuli:
        y, x = rng.integers(2, size - 4, 2)
        image[y : y + 3, x : x + 3] = 1
    stimulus_id = np.repeat(np.arange(n_stimuli), repeats)
    images = stimuli[stimulus_id]
    fmri = images.reshape(len(images), -1) @ rng.normal(size=(size * size, n_voxels))
    fmri += 0.5 * rng.normal(size=fmri.shape)
    return PairedDataset(fmri=fmri, images=images, stimulus_id=stimulus_id)


def _config(**kwargs):
    training = TrainingConfig(max_steps=15, batch_size=8, warmup_steps=1, progress=False)
    base = {
        "block_out_channels": (8, 16),
        "token_dim": 8,
        "training": training,
        "num_inference_steps": 3,
        "n_samples": 3,
    }
    return DiffusionConfig(**(base | kwargs))


def test_ddpm_reports_the_posterior_mean_and_one_sample():
    data = _toy()
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    method = PixelDDPM(MethodSettings(seed=1, device="cpu"), _config()).fit(train)
    rows = method.predict_named(test.fmri)
    assert set(rows) == {"ddpm", "ddpm-1"}
    for images in rows.values():
        assert images.shape == (10, 12, 12)
        assert images.dtype == np.float32
        assert 0 <= images.min() <= images.max() <= 1
    samples = method.sample(test.fmri, 3)
    np.testing.assert_allclose(rows["ddpm"], samples.mean(axis=0), atol=1e-6)
    np.testing.assert_array_equal(rows["ddpm-1"], samples[0])


def test_ddpm_is_deterministic_on_cpu_with_a_seed():
    data = _toy()
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    first = PixelDDPM(MethodSettings(seed=3, device="cpu"), _config()).fit(train).predict(test.fmri)
    second = PixelDDPM(MethodSettings(seed=3, device="cpu"), _config()).fit(train).predict(test.fmri)
    np.testing.assert_array_equal(first, second)


def test_ddpm_img2img_from_ridge_and_guidance(tmp_path):
    data = _toy()
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    settings = MethodSettings(seed=0, device="cpu", work_dir=tmp_path)
    method = PixelDDPM(settings, _config(strength=0.5, guidance_scale=2.0, sampler="dpm++")).fit(train)
    assert method.predict(test.fmri).shape == (10, 12, 12)
    assert (tmp_path / "ddpm" / "loss_curve.png").is_file()


def _ldm_config(**kwargs):
    autoencoder = AutoencoderConfig(
        block_out_channels=(8, 8), training=TrainingConfig(max_steps=10, batch_size=8, progress=False)
    )
    base = {
        "block_out_channels": (8, 16),
        "token_dim": 8,
        "autoencoder": autoencoder,
        "num_inference_steps": 3,
        "n_samples": 2,
        "training": TrainingConfig(max_steps=10, batch_size=8, warmup_steps=1, progress=False),
    }
    return LDMConfig(**(base | kwargs))


@pytest.mark.parametrize("size", [16, 28])
def test_ldm_trains_in_stages_and_saves_each(tmp_path, size):
    data = _toy(size=size)
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    config = _ldm_config()
    method = LatentDiffusion(MethodSettings(seed=0, device="cpu", work_dir=tmp_path), config).fit(train)
    rows = method.predict_named(test.fmri)
    assert set(rows) == {"ldm", "ldm-1"}
    assert rows["ldm"].shape == (10, size, size)
    assert (tmp_path / "ldm" / "vae" / "config.json").is_file()
    assert (tmp_path / "ldm" / "pipeline" / "model_index.json").is_file()
    from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline

    reloaded = FmriImagePipeline.from_pretrained(tmp_path / "ldm" / "pipeline")
    assert reloaded.vae is not None
    assert reloaded.vae.config.scaling_factor == method.vae_.config.scaling_factor


def test_ldm_below_strength_1_starts_from_its_latent_ridge_decoding():
    """The leaderboard lets ldm sample img2img from its first stage: a short walk from the decoded latent
    ridge must stay near it, where sampling from pure noise need not."""
    data = _toy()
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    method = LatentDiffusion(MethodSettings(seed=0, device="cpu"), _ldm_config(num_inference_steps=25))
    method.fit(train)
    with torch.no_grad():
        start = method.pipeline_.from_model_space(method._spatial_condition(test.fmri), 12).numpy()
    distance = {}
    for strength in (0.04, 1.0):
        method.config = replace(method.config, strength=strength)
        distance[strength] = np.abs(method.predict(test.fmri) - start).mean()
    assert distance[0.04] < 0.05
    assert distance[0.04] < distance[1.0] / 3


def test_under_compile_ldm_and_ddpm_train_and_sample_through_compiled_modules_and_reload_so(
    tmp_path, monkeypatch
):
    compiled, calls = [], Counter()  # the modules torch.compile was given, and the calls to what it returned

    def compile_counting_calls(function, **options):  # runs as given: compiling is torch's to test
        module = function.__self__
        compiled.append(module)
        return lambda *args, **kwargs: calls.update([id(module)]) or function(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_counting_calls)
    data = _toy()
    train, test = data.subset(np.arange(30)), data.subset(np.arange(30, 40))
    settings = MethodSettings(seed=0, device="cpu", work_dir=tmp_path, compile=True)
    ldm = LatentDiffusion(settings, _ldm_config()).fit(train)
    vae, unet = ldm.pipeline_.vae, ldm.pipeline_.unet
    assert vae is ldm.vae_
    assert compiled == [vae.encoder, vae.decoder, unet]
    assert all(calls[id(module)] > 0 for module in compiled)  # trained through them
    calls.clear()
    eager = replace(settings, compile=False)
    np.testing.assert_allclose(  # what it saved is the eager model's
        load_method(tmp_path / "ldm" / ldm.saved_as, eager).predict(test.fmri),
        ldm.predict(test.fmri),
        atol=1e-5,
    )
    assert calls[id(unet)] > 0
    assert calls[id(vae.decoder)] > 0
    assert len(compiled) == 3
    reloaded = load_method(tmp_path / "ldm" / ldm.saved_as, settings)
    assert compiled[3:] == [reloaded.pipeline_.unet, reloaded.vae_.encoder, reloaded.vae_.decoder]
    resumed = LatentDiffusion(replace(settings, resume=True), _ldm_config()).fit(train)
    assert compiled[6:] == [resumed.vae_.encoder, resumed.vae_.decoder, resumed.pipeline_.unet]
    compiled.clear()
    ddpm = PixelDDPM(settings, _config()).fit(train)
    assert compiled == [ddpm.pipeline_.unet]
