"""A residual-MLP denoiser for vector latents, with diffusers' sinusoidal timestep embedding."""

from __future__ import annotations

import torch
from diffusers import SchedulerMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class _Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.net = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width)
        )

    def forward(self, h: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return h + self.net(self.norm(h) + time)


class LatentDenoiser(ModelMixin, ConfigMixin):
    """Predicts the noise in [B, latent_dim] latents at timesteps [B].

    Its forward takes (and ignores) the keyword arguments of fmri_diffusion.training.denoising.DenoisingStep,
    so the one training step of the package trains it too.
    """

    @register_to_config
    def __init__(self, latent_dim: int, width: int = 256, n_blocks: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.inp = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(_Block(width, dropout) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, latent_dim))

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, **_: object) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=sample.device).expand(len(sample))
        time = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))
        h = self.inp(sample)
        for block in self.blocks:
            h = block(h, time)
        return self.out(h)


@torch.no_grad()
def sample_latents(
    denoiser: LatentDenoiser,
    scheduler: SchedulerMixin,
    n: int,
    *,
    num_inference_steps: int = 50,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n latents [n, latent_dim] drawn by running `scheduler` (DDIM, DPM-Solver++, ...) from pure noise."""
    scheduler.set_timesteps(num_inference_steps)
    x = torch.randn(n, denoiser.config.latent_dim, generator=generator) * scheduler.init_noise_sigma
    x = x.to(denoiser.device, denoiser.dtype)
    for t in scheduler.timesteps:
        x = scheduler.step(denoiser(scheduler.scale_model_input(x, t), t), t, x).prev_sample
    return x
