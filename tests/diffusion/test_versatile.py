"""Versatile Diffusion from a local folder: the dual-guided UNet mixes the image and text UNets' attention."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

from fmri_diffusion.priors.loading import BaseModelError, base_model_folder, load_base_model
from fmri_diffusion.priors.versatile import DualCrossAttention, load_versatile, set_text_weight


@pytest.fixture(scope="module")
def versatile(published_models):
    return load_versatile(published_models / "versatile-diffusion")


def _unet(folder, transformers_from: str | None = None) -> UNet2DConditionModel:
    """The plain image UNet, its transformers optionally taken from the text UNet."""
    unet = UNet2DConditionModel.from_pretrained(folder / "image_unet")
    if transformers_from:
        text_unet = UNetFlatConditionModel.from_pretrained(folder / transformers_from)
        for name in [n for n, m in unet.named_modules() if type(m).__name__ == "Transformer2DModel"]:
            parent, index = name.rsplit(".", 1)
            unet.get_submodule(parent)[int(index)] = text_unet.get_submodule(name)
    return unet.eval()


def test_each_text_weight_mixes_the_two_guides(versatile, published_models):
    folder = published_models / "versatile-diffusion"
    unet = versatile.base.unet
    sites = [m for m in unet.modules() if isinstance(m, DualCrossAttention)]
    assert len(sites) == 4
    assert all(site.text_length == 77 for site in sites)
    assert any(key.endswith("transformers.1.proj_in.weight") for key in unet.state_dict())  # diffusers' names
    x, t = torch.randn(2, 4, 8, 8), torch.tensor(500)
    text, image = torch.randn(2, 77, 16), torch.randn(2, 257, 16)
    both = torch.cat([text, image], 1)
    with torch.no_grad():
        set_text_weight(unet, 0.0)
        image_only = unet(x, t, encoder_hidden_states=both).sample
        set_text_weight(unet, 1.0)
        text_only = unet(x, t, encoder_hidden_states=both).sample
        set_text_weight(unet, 0.4)
        mixed = unet(x, t, encoder_hidden_states=both).sample
        expected_image = _unet(folder)(x, t, encoder_hidden_states=image).sample
        expected_text = _unet(folder, "text_unet")(x, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(image_only, expected_image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(text_only, expected_text, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(mixed, image_only)
    assert not torch.allclose(mixed, text_only)


def test_the_tokens_are_versatile_diffusions_normalised_clip_tokens(versatile):
    images = versatile.images(np.random.default_rng(0).random((3, 20, 20), dtype=np.float32))
    assert images.shape == (3, 257, 16)
    torch.testing.assert_close(images[:, 0].norm(dim=-1), torch.ones(3))  # divided by the class token's norm
    captions = versatile.captions(["a cat\nthe dog", "x"])
    assert captions.shape == (2, 77, 16)
    two = versatile.captions.encode(["a cat", "the dog"])
    torch.testing.assert_close(captions[0], two.mean(0))  # a trial's captions are averaged
    assert versatile.images.null().shape == (1, 257, 16)


def test_a_folder_missing_a_part_is_refused_by_name(published_models, tmp_path):
    partial = tmp_path / "vd"
    shutil.copytree(published_models / "versatile-diffusion", partial)
    shutil.rmtree(partial / "text_unet")
    with pytest.raises(BaseModelError, match="no text_unet/"):
        load_versatile(partial)


def test_other_methods_refuse_a_versatile_folder_in_one_line(published_models):
    folder = published_models / "versatile-diffusion"
    assert base_model_folder(folder) == folder  # accepted up front: brain-diffuser's stage 2 reads it
    with pytest.raises(BaseModelError, match="only brain-diffuser's stage 2 reads"):
        load_base_model(folder)
