"""Stimulus images [n, H, W] (or RGB [n, H, W, 3]) in [0, 1] <-> the pixels a model works on, [n, C, S, S]
in [-1, 1].

Three ways to fit a stimulus to a model's S x S input: "pad" centres it on a black canvas (models trained
here at nearly the stimulus size), "resize" scales it up (a pretrained model at its native resolution, e.g.
512 for Stable Diffusion; nearest-neighbour up, area average down, so an integer scale round-trips
exactly), "smooth" scales it up bicubically (as the published Brain-Diffuser feeds its stage-1 image to
Versatile Diffusion) and down by area average.
Grayscale stimuli are repeated over the model's C channels and averaged back; RGB stimuli keep their
channels both ways (for RGB models: Brain-Diffuser's published VDVAE and Versatile Diffusion).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from fmri_data.errors import DataError

ImageFit = Literal["pad", "resize", "smooth"]


def check_image_fit(fit: str) -> None:
    """Refuse a fit that is not an ImageFit, in one line naming those there are."""
    if fit not in get_args(ImageFit):
        raise DataError(f"unknown image fit {fit!r}; use {', '.join(get_args(ImageFit))}")


def to_pixels(images: torch.Tensor, size: int, *, channels: int = 1, fit: ImageFit = "pad") -> torch.Tensor:
    """[n, H, W], [n, 1, H, W] or RGB [n, H, W, 3] images in [0, 1] -> [n, channels, size, size] in
    [-1, 1]."""
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        x = images.permute(0, 3, 1, 2)
        if channels != 3:
            raise DataError(f"RGB images need a model of 3 channels; this one has {channels}")
    else:
        x = images.unsqueeze(1) if images.ndim == 3 else images
    check_image_fit(fit)
    x = 2 * x.float() - 1
    if fit == "pad":
        x = pad_to(x, size)
    elif fit == "resize":
        x = F.interpolate(x, size=(size, size), mode="nearest-exact")
    else:  # smooth
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(-1, 1)
    return x.expand(-1, channels, -1, -1) if x.shape[1] != channels else x


def from_pixels(
    x: torch.Tensor, image_size: int, *, fit: ImageFit = "pad", clip: bool = True, colour: bool = False
) -> torch.Tensor:
    """The inverse: [n, C, S, S] in about [-1, 1] -> [n, image_size, image_size] in [0, 1] (not clipped to it
    with clip=False, so that a gradient reaches pixels beyond the range too); with `colour`, a 3-channel
    model's RGB [n, image_size, image_size, 3]."""
    if colour and x.shape[1] != 3:
        raise DataError(f"colour images need a model of 3 channels; this one has {x.shape[1]}")
    images = ((x.float() if colour else x.float().mean(1, keepdim=True)) + 1) / 2
    images = images.clamp(0, 1) if clip else images
    if fit == "pad":
        images = crop_to(images, image_size)
    else:
        images = F.interpolate(images, size=(image_size, image_size), mode="area")
    return images.permute(0, 2, 3, 1) if colour else images[:, 0]


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
