"""Augmentations for tiny image data sets, applied jointly to an image and its spatial condition."""

from __future__ import annotations

import torch


def random_shift(
    batch: dict[str, torch.Tensor], max_shift: int, generator: torch.Generator, *, fill: float = 0.0
) -> dict[str, torch.Tensor]:
    """Translate every [B, C, H, W] tensor of the batch by the same random offset per sample.

    The same offset for image and condition keeps them aligned: the model learns that the condition says
    where things are, while seeing more positions than the few training images hold.
    """
    if max_shift <= 0:
        return batch
    first = next(iter(batch.values()))
    offsets = torch.randint(-max_shift, max_shift + 1, (len(first), 2), generator=generator)
    return {name: _translate(tensor, offsets, fill) for name, tensor in batch.items()}


def _translate(images: torch.Tensor, offsets: torch.Tensor, fill: float) -> torch.Tensor:
    size = images.shape[-1]
    pad = int(offsets.abs().max())
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad), value=fill)
    out = torch.empty_like(images)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, pad - dy : pad - dy + size, pad - dx : pad - dx + size]
    return out
