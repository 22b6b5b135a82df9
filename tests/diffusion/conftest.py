"""Tiny diffusers components for fast CPU tests, built in code as diffusers' own tests do."""

from __future__ import annotations

import pytest
import torch

from fmri_diffusion.conditioning import FmriConditioner
from fmri_diffusion.models import small_unet
from fmri_diffusion.pipeline import FmriImagePipeline
from fmri_diffusion.schedulers import sampling_scheduler, training_scheduler


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
