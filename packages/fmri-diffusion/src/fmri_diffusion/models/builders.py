"""Builders for the small diffusers models this project trains from scratch.

The classes are diffusers' own (UNet2DConditionModel, AutoencoderKL), so a model built here saves, loads and
runs through exactly the code path of a pretrained Stable Diffusion component; only the sizes differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffusers import AutoencoderKL, UNet2DConditionModel

from fmri_data.errors import DataError


def padded_size(image_size: int, n_downsamples: int) -> int:
    """The smallest size >= image_size that survives `n_downsamples` halvings (28 -> 32 for 2)."""
    step = 2**n_downsamples
    return -(-image_size // step) * step


def small_unet(
    *,
    sample_size: int,
    in_channels: int,
    out_channels: int,
    cross_attention_dim: int,
    block_out_channels: Sequence[int] = (32, 64, 128),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    norm_num_groups: int = 8,
) -> UNet2DConditionModel:
    """A UNet with skip connections, time embedding and cross-attention in all but the first level."""
    levels = len(block_out_channels)
    if sample_size % 2 ** (levels - 1):
        raise DataError(f"sample_size {sample_size} must divide by {2 ** (levels - 1)} for {levels} levels")
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1)
    up = ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
    )


def small_autoencoder(
    *,
    sample_size: int,
    in_channels: int = 1,
    latent_channels: int = 4,
    block_out_channels: Sequence[int] = (32, 64, 64),
    norm_num_groups: int = 8,
) -> AutoencoderKL:
    """An AutoencoderKL that downsamples by 2 ** (levels - 1) (32x32 -> 8x8 latents for three levels)."""
    levels = len(block_out_channels)
    return AutoencoderKL(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(block_out_channels),
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        layers_per_block=1,
    )
