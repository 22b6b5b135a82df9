"""A small convolutional conditional VAE over [1, H, W] images, conditioned on a first-stage image.

The condition (e.g. a ridge reconstruction) enters twice: as a second input channel of the encoder
q(z | x, c), and through a condition encoder whose features at three scales are concatenated into the
decoder p(x | z, c), so the decoder can copy what the condition gets right and spend z on what it misses.
A trained model saves as its config and weights (fmri_encoders.persistence: JSON + safetensors, no pickle).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors

_SAVED_AS = "cvae"


@dataclass
class CvaeConfig:
    """image_size: H = W of the images (any size; padded internally to a multiple of 4).

    latent_dim: size of z. width: channels of the first conv layer (doubled once, at the coarsest scale).
    """

    image_size: int
    latent_dim: int = 16
    width: int = 16


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GELU())


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.GELU())


def _same(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GELU())


class ConditionalVaeNet(nn.Module):
    """Encoder q(z | x, c), condition encoder, decoder p(x | z, c) with logits out; prior p(z) = N(0, I)."""

    def __init__(self, config: CvaeConfig) -> None:
        super().__init__()
        self.config = config
        w, latent = config.width, config.latent_dim
        self.padded_size = 4 * math.ceil(config.image_size / 4)
        self.coarse = self.padded_size // 4
        coarse_features = 2 * w * self.coarse * self.coarse
        self.posterior = nn.Sequential(
            _same(2, w), _down(w, w), _down(w, 2 * w), nn.Flatten(), nn.Linear(coarse_features, 2 * latent)
        )
        self.condition_full = _same(1, w)
        self.condition_half = _down(w, w)
        self.condition_coarse = _down(w, 2 * w)
        self.from_latent = nn.Sequential(nn.Linear(latent, coarse_features), nn.GELU())
        self.fuse_coarse = _same(4 * w, 2 * w)
        self.up_half = _up(2 * w, w)
        self.fuse_half = _same(2 * w, w)
        self.up_full = _up(w, w)
        self.fuse_full = _same(2 * w, w)
        self.to_logits = nn.Conv2d(w, 1, 3, padding=1)

    # ------------------------------------------------------------- geometry
    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        extra = self.padded_size - self.config.image_size
        return nn.functional.pad(images, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))

    def _crop(self, images: torch.Tensor) -> torch.Tensor:
        start = (self.padded_size - self.config.image_size) // 2
        return images[..., start : start + self.config.image_size, start : start + self.config.image_size]

    # ---------------------------------------------------------------- parts
    def encode(self, images: torch.Tensor, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance [B, latent_dim] from images and conditions [B, 1, H, W]."""
        stats = self.posterior(self._pad(torch.cat([images, conditions], dim=1)))
        mean, log_var = stats.chunk(2, dim=1)
        return mean, log_var

    def condition_features(self, conditions: torch.Tensor) -> list[torch.Tensor]:
        """Condition features at full, half and quarter resolution; computed once, reused for every z."""
        full = self.condition_full(self._pad(conditions))
        half = self.condition_half(full)
        return [full, half, self.condition_coarse(half)]

    def decode_logits(self, z: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Pixel logits [B, 1, H, W] from latents [B, latent_dim] and condition_features(...)."""
        full, half, coarse = features
        h = self.from_latent(z).view(len(z), -1, self.coarse, self.coarse)
        h = self.fuse_coarse(torch.cat([h, coarse], dim=1))
        h = self.fuse_half(torch.cat([self.up_half(h), half], dim=1))
        h = self.fuse_full(torch.cat([self.up_full(h), full], dim=1))
        return self._crop(self.to_logits(h))

    def forward(
        self, images: torch.Tensor, conditions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised pass for training (torch's global RNG): (logits, posterior mean, log-variance)."""
        mean, log_var = self.encode(images, conditions)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.decode_logits(z, self.condition_features(conditions)), mean, log_var

    def decode(self, z: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Images [B, 1, H, W] in (0, 1) from latents [B, latent_dim] and condition_features(...);
        differentiable in the latents, for samplers that follow a gradient in them."""
        return torch.sigmoid(self.decode_logits(z, features))


def save_cvae(model: ConditionalVaeNet, directory: str | Path) -> None:
    """Write cvae.json (the config) and cvae.safetensors (the weights) into `directory`."""
    save_settings_and_tensors(directory, _SAVED_AS, asdict(model.config), model.state_dict())


def load_cvae(directory: str | Path, device: str = "cpu") -> ConditionalVaeNet:
    """Rebuild a model written by save_cvae, in eval mode on `device`."""
    config, weights = load_settings_and_tensors(directory, _SAVED_AS)
    model = ConditionalVaeNet(CvaeConfig(**config))
    model.load_state_dict(weights)
    return model.to(device).eval()


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row [B], summed over latent dimensions."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)


def negative_elbo(
    model: ConditionalVaeNet,
    images: torch.Tensor,
    conditions: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, kl), batch means: per-image summed BCE + beta * KL to the N(0, I) prior."""
    logits, mean, log_var = model(images, conditions)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, images, reduction="none")
    reconstruction = bce.flatten(1).sum(dim=1)
    kl = kl_to_standard_normal(mean, log_var)
    return (reconstruction + beta * kl).mean(), reconstruction.mean(), kl.mean()
