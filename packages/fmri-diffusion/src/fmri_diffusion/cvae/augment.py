"""Joint random shifts: the image and its condition move together, so their pixel alignment is kept.

With ~100 training trials, shifting by a few pixels multiplies the distinct (image, condition) pairs the
model sees without teaching it anything the fMRI could not support.
"""

from __future__ import annotations

import torch
from torch import nn


def shift_jointly(
    images: torch.Tensor, conditions: torch.Tensor, max_shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each pair [B, 1, H, W] by one random (dy, dx) in [-max_shift, max_shift], edges replicated.

    Draws from torch's global RNG, so a seeded run repeats its shifts.
    """
    if max_shift == 0:
        return images, conditions
    n, size = len(images), images.shape[-1]
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n, 1), device=images.device)
    span = torch.arange(size, device=images.device)
    rows = (span + offsets[0])[:, :, None]
    cols = (span + offsets[1])[:, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None]
    pair = nn.functional.pad(torch.cat([images, conditions], dim=1), (max_shift,) * 4, mode="replicate")
    shifted = pair.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    return shifted[:, :1], shifted[:, 1:]
