"""A VAE of voxel patterns that starts as PCA: a linear path plus a learned nonlinear residual.

encode: mu = (x - mean) @ components.T + residual(x);  decode: x_hat = z @ components + mean + residual(z).
`init_from_pca` puts the training patterns' mean and top principal axes in the linear path; the residual
nets' last layers start at zero, so before training the VAE is exactly the PCA of its latent size and
training (keeping the best weights on validation patterns, step 0 included) can only improve on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
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


def principal_axes(patterns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean [n_voxels] and top-k principal axes [k, n_voxels] of `patterns` (orthonormal rows; zero
    rows past the number the patterns have), in float64."""
    patterns = np.asarray(patterns, np.float64)
    mean = patterns.mean(0)
    _, _, vt = np.linalg.svd(patterns - mean, full_matrices=False)
    axes = np.zeros((k, patterns.shape[1]))
    axes[: min(k, len(vt))] = vt[:k]
    return mean, axes


class VoxelVAE(ModelMixin, ConfigMixin):
    """[B, n_voxels] -> (mu, logvar) [B, latent_dim] -> [B, n_voxels]; a diffusers model for save/load.

    linear_path: add the PCA path (`mean`, `components`, saved with the weights) to the MLP residuals.
    """

    @register_to_config
    def __init__(
        self,
        n_voxels: int,
        latent_dim: int = 64,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.1,
        linear_path: bool = True,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        self.encoder = _mlp((n_voxels, *hidden), dropout)
        self.to_moments = nn.Linear(hidden[-1], 2 * latent_dim)
        self.decoder = nn.Sequential(
            _mlp((latent_dim, *hidden[::-1]), dropout), nn.Linear(hidden[0], n_voxels)
        )
        self.linear_path = linear_path
        if linear_path:  # trainable: it starts at the PCA optimum and may move off it only if that helps
            self.mean = nn.Parameter(torch.zeros(n_voxels))
            self.components = nn.Parameter(nn.init.orthogonal_(torch.empty(latent_dim, n_voxels)))
            for last in (self.to_moments, self.decoder[-1]):  # residuals start at zero (logvar at 0)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    @torch.no_grad()
    def init_from_pca(self, train_patterns: np.ndarray) -> VoxelVAE:
        """Set the linear path to the PCA of the training patterns [n, n_voxels]: the VAE becomes that PCA."""
        if not self.linear_path:
            raise ValueError("init_from_pca needs a VoxelVAE with linear_path=True")
        mean, axes = principal_axes(train_patterns, self.config.latent_dim)
        self.mean.copy_(torch.from_numpy(mean))
        self.components.copy_(torch.from_numpy(axes))
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_moments(self.encoder(x)).chunk(2, dim=-1)
        if self.linear_path:
            mu = mu + (x - self.mean) @ self.components.T
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(z)
        return x + z @ self.components + self.mean if self.linear_path else x

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
