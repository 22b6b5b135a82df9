"""Tiny diffusers components for fast CPU tests, built in code as diffusers' own tests do."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from fmri_diffusion.base_model import BaseModel
from fmri_diffusion.conditioning import FmriConditioner
from fmri_diffusion.models import small_unet
from fmri_diffusion.pipeline import FmriImagePipeline
from fmri_diffusion.schedulers import sampling_scheduler, training_scheduler

TOKEN_DIM = 16


def tiny_components(seed: int = 0, in_channels: int = 2) -> dict:
    torch.manual_seed(seed)
    unet = small_unet(
        sample_size=8,
        in_channels=in_channels,
        out_channels=1,
        cross_attention_dim=8,
        block_out_channels=(8, 16),
        attention_head_dim=4,
        norm_num_groups=4,
    )
    conditioner = FmriConditioner(in_features=5, token_dim=8, n_tokens=2, hidden=16, dropout=0.0)
    return {"unet": unet, "scheduler": training_scheduler("cosine"), "conditioner": conditioner}


@pytest.fixture
def tiny_pipeline() -> FmriImagePipeline:
    components = tiny_components()
    components["scheduler"] = sampling_scheduler("ddim", components["scheduler"])
    pipe = FmriImagePipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_tiny_sd(seed: int = 0) -> BaseModel:
    """Stable Diffusion's classes and layout (3-channel VAE, 4 latents, cross-attention) at toy size."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TOKEN_DIM,
        attention_head_dim=4,
        layers_per_block=1,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    return BaseModel(unet=unet, vae=vae, scheduler=DDPMScheduler(), source="tiny")


@pytest.fixture(name="tiny_sd")
def tiny_sd_fixture():
    """The factory of tiny SD-shaped base models (cross_attention_dim TOKEN_DIM, 16 px, 8x8 latents)."""
    return make_tiny_sd
