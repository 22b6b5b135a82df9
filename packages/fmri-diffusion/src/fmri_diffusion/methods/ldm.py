"""The `ldm` method: conditional diffusion in the latent space of an autoencoder trained here.

Staged as recommended for tiny data: (1) an AutoencoderKL on the training images, (2) ridge from fMRI to
its latents (out-of-fold for the training trials), (3) the conditional UNet in latent space. With a work_dir
each stage is saved with save_pretrained (`ldm/vae`, `ldm/pipeline`, in the final fit's folder when a grid
chose among fitted settings: DiffusionMethod.stage_dir) and can be reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from diffusers import AutoencoderKL

from fmri_data.dataset import PairedDataset
from fmri_diffusion.methods.conditional import ConditionalDiffusion, DiffusionConfig
from fmri_diffusion.models.builders import padded_size
from fmri_diffusion.pipelines.latents import encode_latents
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.training.autoencoder import AutoencoderConfig, train_autoencoder
from fmri_encoders.out_of_fold import out_of_fold_ridge


@dataclass(frozen=True)
class LDMConfig(DiffusionConfig):
    """DiffusionConfig for the latent UNet (two levels suit 8x8 latents) plus the autoencoder's settings."""

    block_out_channels: tuple[int, ...] = (64, 128)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)

    def quick(self) -> LDMConfig:
        base = super().quick()
        return replace(
            base,
            autoencoder=replace(
                self.autoencoder,
                block_out_channels=(8,) * len(self.autoencoder.block_out_channels),
                training=replace(base.training, max_steps=10),
            ),
        )


class LatentDiffusion(ConditionalDiffusion):
    """Denoises autoencoder latents; the condition is ridge's prediction of those latents."""

    name = "ldm"
    config_class = LDMConfig

    def _fit_model_space(self, images: np.ndarray) -> tuple[AutoencoderKL | None, torch.Tensor]:
        autoencoder = self.config.autoencoder
        self.vae_ = train_autoencoder(
            images,
            replace(autoencoder, training=self.training(autoencoder.training)),
            seed=self.settings.seed,
            device=self.settings.device,
            **self.checkpointing(),
            pixel_size=self._pixel_size(),
            initial=None if self.warm_start_ is None else self.warm_start_.vae_,
            compile=self.settings.compile,
        )
        clean = self._encode(images)
        self.latent_shape_ = tuple(clean.shape[1:])
        return self.vae_, clean

    def _fit_first_stage(
        self, train: PairedDataset
    ) -> tuple[AutoencoderKL | None, torch.Tensor, torch.Tensor]:
        _, clean = self._fit_model_space(train.images)
        ridge_train, self.ridge_ = out_of_fold_ridge(
            train.fmri, clean.numpy(), train.stimulus_id, per_target=False, **self.ridge_options()
        )
        return self.vae_, clean, torch.from_numpy(ridge_train)

    def _spatial_condition(self, fmri: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.ridge_.predict(fmri).reshape(len(fmri), *self.latent_shape_))

    def _model_space_from_pipeline(self) -> None:
        self.vae_ = self.pipeline_.vae
        unet = self.pipeline_.unet.config
        self.latent_shape_ = (unet.out_channels, unet.sample_size, unet.sample_size)

    def _pixel_size(self) -> int:
        """Padded so that the latents still halve cleanly through every level of the latent UNet."""
        downsamples = (
            len(self.config.autoencoder.block_out_channels) - 1 + len(self.config.block_out_channels) - 1
        )
        return padded_size(self.image_size_, downsamples)

    @torch.no_grad()
    def _encode(self, images: np.ndarray) -> torch.Tensor:
        pixels = to_pixels(torch.from_numpy(images), self._pixel_size())
        return encode_latents(self.vae_, pixels, device=self.settings.device)
