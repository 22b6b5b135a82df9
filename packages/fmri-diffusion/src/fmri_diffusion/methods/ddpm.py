"""The `ddpm` method: conditional diffusion in pixel space on top of ridge (see methods.conditional)."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL

from fmri_data.dataset import PairedDataset
from fmri_diffusion.methods.conditional import ConditionalDiffusion
from fmri_diffusion.models.builders import padded_size
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.training.augment import random_shift
from fmri_encoders.out_of_fold import out_of_fold_ridge


class PixelDDPM(ConditionalDiffusion):
    """Denoises padded pixels in [-1, 1]; the condition is the ridge reconstruction of the same pixels."""

    name = "ddpm"
    pixel_space = True

    def _fit_model_space(self, images: np.ndarray) -> tuple[AutoencoderKL | None, torch.Tensor]:
        self.model_size_ = padded_size(self.image_size_, len(self.config.block_out_channels) - 1)
        return None, self._to_model_space(images)

    def _fit_first_stage(
        self, train: PairedDataset
    ) -> tuple[AutoencoderKL | None, torch.Tensor, torch.Tensor]:
        ridge_train, self.ridge_ = out_of_fold_ridge(
            train.fmri, train.images, train.stimulus_id, per_target=False, **self.ridge_options()
        )
        vae, clean = self._fit_model_space(train.images)
        return vae, clean, self._to_model_space(ridge_train)

    def _spatial_condition(self, fmri: np.ndarray) -> torch.Tensor:
        ridge = self.ridge_.predict(fmri).reshape(len(fmri), self.image_size_, self.image_size_)
        return self._to_model_space(ridge)

    def _model_space_from_pipeline(self) -> None:
        self.model_size_ = self.pipeline_.unet.config.sample_size

    def _to_model_space(self, images: np.ndarray) -> torch.Tensor:
        return to_pixels(torch.from_numpy(np.clip(images, 0, 1).astype(np.float32)), self.model_size_)

    def _augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return random_shift(batch, self.config.max_shift, generator, fill=-1.0)
