"""Brain-Diffuser stage 2 on an image-variation model (CLIP image tokens) and with caption guidance."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_data.methods import MethodSettings
from fmri_diffusion.methods.brain_diffuser import BrainDiffuser
from fmri_diffusion.priors.loading import BaseModelError


def split(dataset):
    return dataset.subset(~dataset.given_test), dataset.subset(dataset.given_test)


def with_captions(dataset):
    return replace(dataset, captions=np.array([f"image {i}" for i in dataset.stimulus_id]))


def test_an_image_variation_model_guides_stage2_with_clip_tokens(linear_dataset, variation_model, tmp_path):
    train, test = split(linear_dataset)  # no captions: image guidance only
    settings = MethodSettings(
        device="cpu", quick=True, seed=2, pretrained=str(variation_model), work_dir=tmp_path / "w"
    )
    method = BrainDiffuser(settings).fit(train)
    assert method.guides_.image_route == "clip"
    assert method.guides_.token_shape == (1, 16)  # one CLIP image embedding, as image-variation UNets read it
    assert method.adapter_ == "lora"  # a pretrained base adapts through LoRA
    rows = method.predict_named(test.fmri)
    assert rows["brain-diffuser"].shape == test.images.shape
    manifest = json.loads((tmp_path / "w" / "brain-diffuser" / "stages" / "method.json").read_text())
    assert manifest["mixing"] == 0.0


def test_captions_add_text_guidance_that_is_saved_and_reloaded(linear_dataset, variation_model, tmp_path):
    train, test = split(with_captions(linear_dataset))
    settings = MethodSettings(
        device="cpu", quick=True, seed=2, pretrained=str(variation_model), work_dir=tmp_path / "w"
    )
    method = BrainDiffuser(settings).fit(train)
    assert method.guides_.mixing == 0.4  # the published mix where captions exist
    assert method.guides_.text.shape == (8, 16)  # the tokenizer's max length x the text encoder's width
    rows = method.predict_named(test.fmri)
    stages = tmp_path / "w" / "brain-diffuser" / "stages"
    assert (stages / "text_ridge").is_dir()
    reloaded = BrainDiffuser.load(stages, settings)
    np.testing.assert_allclose(
        reloaded.predict_named(test.fmri)["brain-diffuser"], rows["brain-diffuser"], atol=1e-5
    )
    image_only = BrainDiffuser(replace(settings, work_dir=None, sampling={"mixing": 0.0})).fit(train)
    assert not np.allclose(image_only.predict(test.fmri), rows["brain-diffuser"])


def test_mixing_without_captions_or_a_text_encoder_is_refused(linear_dataset, tmp_path):
    train, _ = split(with_captions(linear_dataset))
    settings = MethodSettings(
        device="cpu", quick=True, cache_dir=tmp_path / "cache", sampling={"mixing": 0.5}
    )
    with pytest.raises(BaseModelError, match="text_encoder/ and tokenizer/"):
        BrainDiffuser(settings).fit(train)  # the small base has no text encoder


def test_a_base_with_neither_embedder_is_refused(linear_dataset, tiny_sd, tmp_path):
    tiny_sd().save(tmp_path / "sd")
    train, _ = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, pretrained=str(tmp_path / "sd"))
    with pytest.raises(BaseModelError, match="image_encoder/"):
        BrainDiffuser(settings).fit(train)


def test_pipeline_mixing_weights_the_two_guides(tiny_pipeline):
    image, text = torch.randn(2, 2, 8), torch.randn(2, 5, 8)  # different token counts: separate UNet calls

    def run(tokens, **kwargs):
        generator = [torch.Generator().manual_seed(i) for i in range(2)]
        spatial = torch.zeros(2, 1, 8, 8)
        options = {"image_size": 8, "num_inference_steps": 3, "generator": generator} | kwargs
        return tiny_pipeline(spatial_condition=spatial, tokens=tokens, **options)

    image_only = run(image)
    np.testing.assert_allclose(run(image, text_tokens=text, mixing=0.0), image_only, atol=1e-6)
    np.testing.assert_allclose(run(image, text_tokens=text, mixing=1.0), run(text), atol=1e-6)
    halfway = run(image, text_tokens=text, mixing=0.5)
    assert not np.allclose(halfway, image_only)
    assert not np.allclose(halfway, run(text))
    guided = run(image, text_tokens=text, mixing=0.5, guidance_scale=3.0)  # CFG over both guides
    assert guided.shape == halfway.shape
    with pytest.raises(ValueError, match="needs text_tokens"):
        run(image, mixing=0.5)


def test_several_captions_of_a_trial_are_averaged(variation_model):
    from fmri_diffusion.priors.captions import CaptionEncoder

    encoder = CaptionEncoder.from_folder(variation_model)
    both = encoder(["a cat\na dog", "a cat"])
    torch.testing.assert_close(both[0], encoder.encode(["a cat", "a dog"]).mean(0))
    torch.testing.assert_close(both[1], encoder.encode(["a cat"])[0])
