"""Adapting Brain-Diffuser's prior to the training images before stage 2.

The original's prior (Versatile Diffusion) knows natural images; a small base knows only the simulator's
patterns, blobs and strokes, and at strength 0.75 it pulls images towards them. So the UNet is fine-tuned as
an image-variation model of the training images: each image's own tokens condition its denoising (the
frozen embedder's, from noised latents as in pre-training, or the CLIP route's). No fMRI and no test image
is involved.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from fmri_diffusion.methods.brain_diffuser.parts import GuideRidges
from fmri_diffusion.models.conditioner import GivenTokens
from fmri_diffusion.priors.loading import BaseModel
from fmri_diffusion.priors.small import noisy_embedding_input
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune, prepare_unet
from fmri_encoders.training import TrainingResult


def adapt_prior(
    unet: UNet2DConditionModel,
    base: BaseModel,
    guides: GuideRidges,
    latents: torch.Tensor,
    tokens: torch.Tensor,
    config: FinetuneConfig,
    *,
    condition_noise: float,
    description: str,
    out_dir: Path | None = None,
    resume: str | None = None,
) -> tuple[UNet2DConditionModel, TrainingResult]:
    """The adapted UNet (in eval mode) and its training, from the training images' latents and tokens."""
    if guides.image_route == "embedder":  # the embedder sees noised latents, as in pre-training
        conditioner = base.conditioner.requires_grad_(False)
        condition = latents.flatten(1)
        augment = partial(noisy_embedding_input, max_noise=condition_noise)
    else:
        conditioner, condition, augment = GivenTokens(*guides.token_shape), tokens.flatten(1), None
    unet = prepare_unet(unet, config)
    result = finetune(
        ConditionedUNet(unet, conditioner),
        {"clean": latents, "condition": condition},
        base.scheduler,
        config,
        out_dir=out_dir,
        resume=resume,
        description=description,
        augment=augment,
    )
    return unet.eval(), result
