"""A VAE of voxel patterns: an MLP encoder to a Gaussian latent and an MLP decoder back to voxels."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def _mlp(widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Dropout between consecutive widths."""
    layers: list[nn.Module] = []
    for width_in, width_out in pairwise(widths):
        layers += [nn.Linear(width_in, width_out), nn.LayerNorm(width_out), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class VoxelVAE(ModelMixin, ConfigMixin):
    """[B, n_voxels] -> (mu, logvar) [B, latent_dim] -> [B, n_voxels]; a diffusers model for save/load."""

    @register_to_config
    def __init__(
        self, n_voxels: int, latent_dim: int = 64, hidden: Sequence[int] = (512, 256), dropout: float = 0.1
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        self.encoder = _mlp((n_voxels, *hidden), dropout)
        self.to_moments = nn.Linear(hidden[-1], 2 * latent_dim)
        self.decoder = nn.Sequential(
            _mlp((latent_dim, *hidden[::-1]), dropout), nn.Linear(hidden[0], n_voxels)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_moments(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Reconstruction with the reparameterisation z = mu + sigma * noise (noise None: z = mu)."""
        mu, logvar = self.encode(x)
        z = mu if noise is None else mu + (0.5 * logvar).exp() * noise
        return self.decode(z), mu, logvar


def vae_loss(
    reconstruction: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float
) -> torch.Tensor:
    """Mean squared error per voxel + beta * KL(q(z|x) || N(0, I)) per latent dimension."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean()
    return F.mse_loss(reconstruction, x) + beta * kl
