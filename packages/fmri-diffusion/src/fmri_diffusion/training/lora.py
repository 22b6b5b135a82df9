"""LoRA adapters on a UNet2DConditionModel's attention projections, through peft and diffusers' format.

Cross-attention (`attn2`) is where the fMRI tokens enter the UNet, so adapting its projections is the
least change that lets a pretrained model listen to a new condition; self-attention (`attn1`) is optional.
Weights are saved with diffusers' `save_lora_weights`, so `pipe.load_lora_weights(folder)` restores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from fmri_data.errors import DataError

LoraTargets = Literal["cross", "self", "all"]

_ATTENTION = {"cross": ("attn2",), "self": ("attn1",), "all": ("attn1", "attn2")}
_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def lora_target_modules(targets: LoraTargets) -> list[str]:
    """peft target-module suffixes for the chosen attention layers (q, k, v and output projections)."""
    if targets not in _ATTENTION:
        raise DataError(f"unknown LoRA targets {targets!r}; use cross, self or all")
    return [f"{attention}.{projection}" for attention in _ATTENTION[targets] for projection in _PROJECTIONS]


def add_lora(
    unet: UNet2DConditionModel, *, rank: int = 8, alpha: float | None = None, targets: LoraTargets = "cross"
) -> UNet2DConditionModel:
    """Freeze `unet` and add trainable rank-`rank` adapters (scale alpha/rank; alpha defaults to rank)."""
    if rank < 1:
        raise DataError(f"LoRA rank must be at least 1, got {rank}")
    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        init_lora_weights="gaussian",
        target_modules=lora_target_modules(targets),
    )
    unet.add_adapter(config)
    for parameter in unet.parameters():  # adapters train in fp32 even when the frozen base is bf16
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return unet


def lora_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The adapter weights in diffusers' key format."""
    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet: UNet2DConditionModel, folder: str | Path, *, is_main_process: bool = True) -> Path:
    """Write `pytorch_lora_weights.safetensors` into `folder`, loadable with `pipe.load_lora_weights`."""
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        str(folder), unet_lora_layers=lora_state_dict(unet), is_main_process=is_main_process
    )
    return Path(folder)


def count_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
