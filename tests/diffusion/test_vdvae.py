"""VDVAE: the published architecture and key names, its checkpoint read safely, converted and read back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fmri_data.errors import DataError
from fmri_diffusion.models.vdvae import VDVAE, parse_blocks
from fmri_diffusion.priors.loading import BaseModelError
from fmri_diffusion.priors.vdvae import convert_vdvae, load_vdvae, vdvae_latent_layers


def test_block_strings_parse_as_the_published_ones():
    assert parse_blocks("4x2,4d4,8m4,1") == [(4, None), (4, None), (4, 4), (8, 4), (1, None)]


def test_the_default_is_the_published_imagenet64_model():
    model = VDVAE()
    assert len(model.encoder.enc_blocks) == 65
    assert len(model.decoder.dec_blocks) == 75
    assert sum(c * h * w for c, h, w in model.latent_shapes(31)) == 91_168  # Brain-Diffuser's stage-1 target
    assert 120e6 < sum(p.numel() for p in model.parameters()) < 130e6
    keys = set(model.state_dict())
    published = {
        "encoder.in_conv.weight",
        "encoder.enc_blocks.64.c4.bias",
        "decoder.dec_blocks.0.enc.c1.weight",
        "decoder.dec_blocks.0.prior.c4.weight",
        "decoder.dec_blocks.74.z_proj.weight",
        "decoder.dec_blocks.74.resnet.c3.weight",
        "decoder.bias_xs.5",
        "decoder.out_net.out_conv.weight",
        "decoder.gain",
        "decoder.bias",
    }
    assert published <= keys


def test_the_latent_layers_are_counted_from_the_config_alone(published_models, tmp_path):
    folder = published_models / "versatile-diffusion" / "vdvae"
    assert vdvae_latent_layers(folder) == len(load_vdvae(folder).decoder.dec_blocks)
    assert vdvae_latent_layers(published_models / "vdvae.th") == 75  # a published file: ImageNet-64's


def test_latents_are_the_posterior_means_and_decoding_is_seeded(published_models):
    model = load_vdvae(published_models / "versatile-diffusion" / "vdvae")
    images = torch.rand(3, 3, 16, 16)
    latents = model.encode_latents(images, 5)
    assert latents.shape == (3, 1 * 4 + 4 * 16 * 2 + 4 * 64 * 2)  # layers at 1, 4, 4, 8, 8 px
    assert torch.equal(latents, model.encode_latents(images, 5))

    def decode(z, seed):
        return model.decode_latents(z, 5, generator=torch.Generator().manual_seed(seed))

    one_each = [torch.Generator().manual_seed(seed) for seed in (5, 6, 7)]
    batched = model.decode_latents(latents, 5, generator=one_each)
    alone = model.decode_latents(latents[2:], 5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(batched[2:], alone)  # an image's draws do not depend on its batch
    first = decode(latents, 0)
    assert first.shape == (3, 3, 16, 16)
    assert first.min() >= 0
    assert first.max() <= 1
    assert torch.equal(first, decode(latents, 0))
    assert not torch.equal(first, decode(latents, 1))
    assert not torch.equal(first, decode(latents.flip(0), 0))
    with pytest.raises(DataError, match="5 latent layers hold"):
        model.decode_latents(latents[:, :-1], 5)
    with pytest.raises(DataError, match=r"n_layers must be in 1\.\.7"):
        model.encode_latents(images, 8)


def test_the_published_checkpoint_converts_and_round_trips(published_models, tmp_path):
    config = {
        k: v
        for k, v in VDVAE.from_pretrained(published_models / "versatile-diffusion" / "vdvae").config.items()
        if not k.startswith("_")
    }
    original = load_vdvae(published_models / "vdvae.th", config=config)  # DDP's "module." prefix dropped
    converted = load_vdvae(convert_vdvae(published_models / "vdvae.th", tmp_path / "vdvae", config=config))
    assert sorted(p.name for p in (tmp_path / "vdvae").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    for key, value in original.state_dict().items():
        assert torch.equal(value, converted.state_dict()[key]), key
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(original.encode_latents(images, 7), converted.encode_latents(images, 7))


def test_a_checkpoint_of_another_shape_or_with_code_in_it_is_refused(published_models, tmp_path):
    with pytest.raises(BaseModelError, match="do not fit this VDVAE config"):
        load_vdvae(published_models / "vdvae.th")  # the tiny model's tensors against the ImageNet-64 config
    torch.save({"weights": _Payload()}, tmp_path / "code.th")
    with pytest.raises(BaseModelError, match="only tensors are read"):
        load_vdvae(tmp_path / "code.th")
    with pytest.raises(BaseModelError, match="not found"):
        load_vdvae(tmp_path / "nowhere.th")


def test_conversion_never_replaces_a_folder_that_is_not_a_vdvae(published_models, tmp_path):
    (tmp_path / "versatile-diffusion" / "unet").mkdir(parents=True)
    with pytest.raises(BaseModelError, match="is not a VDVAE folder"):
        convert_vdvae(published_models / "vdvae.th", tmp_path / "versatile-diffusion")
    assert (tmp_path / "versatile-diffusion" / "unet").is_dir()


class _Payload:
    """An object a pickle would rebuild by running code: weights_only must refuse it."""


def test_the_conversion_command(published_models, tmp_path):
    config = tmp_path / "config.json"
    config.write_text((published_models / "versatile-diffusion" / "vdvae" / "config.json").read_text())
    command = [sys.executable, "-m", "fmri_diffusion", "convert-vdvae", str(published_models / "vdvae.th")]
    done = subprocess.run(
        [*command, str(tmp_path / "out"), "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "config.json").read_text())["width"] == 16
    failed = subprocess.run([*command, str(tmp_path / "bad")], capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.startswith("fmri-diffusion: error:")
    assert failed.stderr.count("\n") == 1
    assert not (tmp_path / "bad").exists()
