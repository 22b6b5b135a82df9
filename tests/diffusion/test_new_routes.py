"""sd-full (the whole UNet fine-tuned) and the contrastive condition, on tiny models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.priors.loading import load_base_model
from fmri_encoders.out_of_fold import out_of_fold_embeddings


def settings_in(tmp_path, **sampling):
    """A quick CPU run keeping its work and base cache under tmp_path, with these sampling overrides."""
    return MethodSettings(
        device="cpu", quick=True, work_dir=tmp_path / "w", cache_dir=tmp_path / "c", sampling=sampling
    )


def split(dataset):
    test = dataset.given_test
    return dataset.subset(np.flatnonzero(~test)), dataset.subset(np.flatnonzero(test))


def test_sd_full_trains_every_unet_weight_and_reloads(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    settings = settings_in(tmp_path)
    method = create_method("sd-full", settings).fit(train)
    base = load_base_model(next((tmp_path / "c").glob("small-base-*")))
    tuned = dict(method.pipeline_.unet.named_parameters())
    changed = [name for name, weight in base.unet.named_parameters() if not torch.equal(weight, tuned[name])]
    assert len(changed) > 0.9 * len(tuned)  # not just cross-attention
    assert not method.pipeline_.unet.is_gradient_checkpointing  # the small base needs no recomputation
    reloaded = load_method(tmp_path / "w" / "sd-full" / "finetuned", settings)
    np.testing.assert_allclose(reloaded.predict(test.fmri), method.predict(test.fmri), atol=1e-5)


def test_under_compile_an_sd_route_compiles_the_unet_it_trains_and_samples_with_and_reloads(
    linear_dataset, tmp_path, monkeypatch
):
    compiled = []  # what torch.compile was given; run as given (compiling is torch's to test)
    monkeypatch.setattr(torch, "compile", lambda function, **options: compiled.append(function) or function)
    train, _ = split(linear_dataset)
    settings = replace(settings_in(tmp_path), compile=True)
    method = create_method("sd-lora", settings).fit(train)
    assert [f.__self__ for f in compiled] == [method.pipeline_.unet]  # it trained, and it samples
    load_method(tmp_path / "w" / "sd-lora" / "finetuned", replace(settings, compile=False))
    assert len(compiled) == 1
    reloaded = load_method(tmp_path / "w" / "sd-lora" / "finetuned", settings)
    assert [f.__self__ for f in compiled[1:]] == [reloaded.pipeline_.unet]


def test_sd_full_checkpoints_gradients_on_a_pretrained_base(linear_dataset, tiny_sd, tmp_path):
    tiny_sd().save(tmp_path / "sd")
    train, _ = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, pretrained=str(tmp_path / "sd"))
    method = create_method("sd-full", settings).fit(train)
    assert method.pipeline_.unet.is_gradient_checkpointing


def test_the_contrastive_condition_feeds_held_out_embeddings_and_reloads(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    settings = settings_in(tmp_path, condition="contrastive")
    method = create_method("sd-lora", settings)
    assert method.config.condition == "contrastive"
    method.fit(train)
    embed_dim = method.contrastive_.embed_fmri(test.fmri[:1]).shape[1]
    assert method.pipeline_.conditioner.config.in_features == embed_dim
    reloaded = load_method(tmp_path / "w" / "sd-lora" / "finetuned", settings)
    np.testing.assert_allclose(reloaded.predict(test.fmri), method.predict(test.fmri), atol=1e-5)


def test_out_of_fold_embeddings_come_from_encoders_that_never_saw_the_stimulus(linear_dataset):
    train, _ = split(linear_dataset)
    options = {"epochs": 2, "hidden": 16, "embed_dim": 8, "cnn_channels": 4}
    held_out, full = out_of_fold_embeddings(train.fmri, train.images, train.stimulus_id, k=3, **options)
    in_sample = full.embed_fmri(train.fmri)
    assert held_out.shape == in_sample.shape
    assert np.allclose(np.linalg.norm(held_out, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(held_out, in_sample, atol=1e-3)


def test_img2img_can_start_from_the_pixel_ridge_image_and_reloads_so(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    settings = settings_in(tmp_path, start="ridge-pixels", strength=0.5)
    method = create_method("sd-lora", settings).fit(train)
    inputs = method.sampling_inputs(test.fmri)
    assert "init_latents" not in inputs
    expected = np.clip(method.pixel_ridge_.predict(test.fmri), 0, 1).reshape(test.images.shape)
    np.testing.assert_allclose(inputs["init_image"].numpy(), expected, atol=1e-6)
    reloaded = load_method(tmp_path / "w" / "sd-lora" / "finetuned", settings)
    assert reloaded.config.start == "ridge-pixels"
    np.testing.assert_allclose(reloaded.predict(test.fmri), method.predict(test.fmri), atol=1e-5)


def test_residual_decoding_passes_the_pixel_ridge_image_and_reloads_so(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    settings = settings_in(tmp_path, decode="residual", strength=0.5)
    method = create_method("sd-lora", settings).fit(train)
    inputs = method.sampling_inputs(test.fmri)
    assert "init_latents" in inputs  # the start stays ridge's latents
    expected = np.clip(method.pixel_ridge_.predict(test.fmri), 0, 1).reshape(test.images.shape)
    np.testing.assert_allclose(inputs["residual_image"].numpy(), expected, atol=1e-6)
    reloaded = load_method(tmp_path / "w" / "sd-lora" / "finetuned", settings)
    assert reloaded.config.decode == "residual"
    np.testing.assert_allclose(reloaded.predict(test.fmri), method.predict(test.fmri), atol=1e-5)


def test_residual_decoding_without_an_img2img_start_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"decode 'residual' .* strength below 1"):
        create_method("sd-lora", settings_in(tmp_path, decode="residual", strength=1.0))
