"""Images to the latents a UNet denoises: the one encoding the fine-tunes, Brain-Diffuser and sampling use."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from fmri_encoders.runtime import resolve_device


def scaled_latents(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """The posterior mean of model pixels [n, C, S, S] in [-1, 1], scaled as the UNet sees it (SD's
    convention: unit variance), on the VAE's device and dtype."""
    return vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, pixels: torch.Tensor, *, device: str = "auto", batch_size: int = 16
) -> torch.Tensor:
    """scaled_latents of many images, in batches on `device`, gathered as float32 on the CPU."""
    vae = vae.to(resolve_device(device))
    return torch.cat([scaled_latents(vae, chunk).float().cpu() for chunk in pixels.split(batch_size)])
