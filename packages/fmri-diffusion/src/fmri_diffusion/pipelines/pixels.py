"""Stimulus images [n, H, W] in [0, 1] <-> the pixels a model works on, [n, C, S, S] in [-1, 1].

Three ways to fit a stimulus to a model's S x S input: "pad" centres it on a black canvas (models trained
here at nearly the stimulus size), "resize" scales it up (a pretrained model at its native resolution, e.g.
512 for Stable Diffusion; nearest-neighbour up, area average down, so an integer scale round-trips
exactly), "smooth" scales it up bicubically (as the published Brain-Diffuser feeds its stage-1 image to
Versatile Diffusion) and down by area average.
Grayscale stimuli are repeated over the model's C channels and averaged back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from fmri_data.errors import DataError

ImageFit = Literal["pad", "resize", "smooth"]


def to_pixels(images: torch.Tensor, size: int, *, channels: int = 1, fit: ImageFit = "pad") -> torch.Tensor:
    """[n, H, W] or [n, 1, H, W] images in [0, 1] -> [n, channels, size, size] in [-1, 1]."""
    x = images.unsqueeze(1) if images.ndim == 3 else images
    x = 2 * x.float() - 1
    if fit == "pad":
        x = pad_to(x, size)
    elif fit == "resize":
        x = F.interpolate(x, size=(size, size), mode="nearest-exact")
    elif fit == "smooth":
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(-1, 1)
    else:
        raise DataError(f"unknown image fit {fit!r}; use pad, resize or smooth")
    return x.expand(-1, channels, -1, -1) if x.shape[1] != channels else x


def from_pixels(
    x: torch.Tensor, image_size: int, *, fit: ImageFit = "pad", clip: bool = True
) -> torch.Tensor:
    """The inverse: [n, C, S, S] in about [-1, 1] -> [n, image_size, image_size] in [0, 1] (not clipped to it
    with clip=False, so that a gradient reaches pixels beyond the range too)."""
    images = (x.float().mean(1, keepdim=True) + 1) / 2
    images = images.clamp(0, 1) if clip else images
    if fit == "pad":
        return crop_to(images, image_size)[:, 0]
    return F.interpolate(images, size=(image_size, image_size), mode="area")[:, 0]


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (in [-1, 1] units: -1, the black background) to size x size, centred."""
    extra = size - x.shape[-1]
    if extra < 0:
        raise DataError(f"images of {x.shape[-1]} px do not fit the model's {size} px")
    before = extra // 2
    return F.pad(x, (before, extra - before, before, extra - before), value=-1.0)


def crop_to(x: torch.Tensor, size: int) -> torch.Tensor:
    before = (x.shape[-1] - size) // 2
    return x[..., before : before + size, before : before + size]
