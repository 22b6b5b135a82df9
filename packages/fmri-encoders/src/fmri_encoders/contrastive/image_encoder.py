"""A small CNN image encoder, trained jointly with the fMRI encoder when no pretrained model is wanted."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ImageEncoderConfig:
    """channels: width of the first conv layer (the next two have twice as many)."""

    embed_dim: int = 128
    channels: int = 32


class ConvImageEncoder(nn.Module):
    """Grayscale [B, H, W] images in [0, 1] of any square size -> [B, embed_dim].

    Pooling to a fixed 4x4 grid (not to one value) keeps where things are, which is what tells
    retinotopic stimuli such as digits and letters apart.
    """

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * c * 16, config.embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images[:, None] * 2 - 1))
