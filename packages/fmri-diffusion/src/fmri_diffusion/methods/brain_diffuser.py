"""Brain-Diffuser (Ozcelik & VanRullen 2023), two stages on one base model, no diffusion training at all.

- `brain-diffuser-stage1`: ridge from fMRI to the base autoencoder's latents; decoding them gives a coarse
  image (the original uses VDVAE latents; here any diffusers AutoencoderKL: the small base model's, or a
  user's Stable Diffusion VAE with --pretrained).
- `brain-diffuser`: ridge from fMRI to the conditioning model's image-embedding tokens (the original: CLIP
  vision, and CLIP text where captions exist), then image-to-image diffusion from the stage-1 latents at
  `strength` (0.75 with 50 DDIM steps, as published) guided by the predicted tokens. The image embedder is
  the small base model's `conditioner/`; a base without one cannot run stage 2 and says so. Text guidance
  is not built: the data sets here have no captions.
Both ridges are fitted on training trials only; the reported `brain-diffuser` row is the mean of
`n_samples` samples and `brain-diffuser-1` one sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_diffusion.base_model import BaseModelError, SmallBaseConfig, base_model_for, encode_latents
from fmri_diffusion.methods.conditional import posterior_rows, sample_generators
from fmri_diffusion.pipeline import FmriImagePipeline
from fmri_diffusion.pixels import to_pixels
from fmri_diffusion.schedulers import Sampler, sampling_scheduler
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import resolve_device


@dataclass(frozen=True)
class BrainDiffuserConfig:
    base: SmallBaseConfig = field(default_factory=SmallBaseConfig)
    strength: float = 0.75
    num_inference_steps: int = 50
    guidance_scale: float = 1.0
    sampler: Sampler = "ddim"
    n_samples: int = 8

    def quick(self) -> BrainDiffuserConfig:
        return replace(self, base=self.base.quick(), num_inference_steps=4, n_samples=2)


class BrainDiffuserStage1(ReconstructionMethod):
    """fMRI -> autoencoder latents (ridge) -> decoded image."""

    name = "brain-diffuser-stage1"

    def __init__(
        self, settings: MethodSettings | None = None, config: BrainDiffuserConfig | None = None
    ) -> None:
        super().__init__(settings)
        config = config or BrainDiffuserConfig()
        self.config = config.quick() if self.settings.quick else config

    def fit(self, train: PairedDataset) -> BrainDiffuserStage1:
        self.image_size_ = train.image_shape[0]
        self.base_ = base_model_for(self.settings, self.config.base, self.image_size_)
        vae = self.base_.vae
        pixels = to_pixels(
            torch.from_numpy(train.images),
            self.base_.resolution,
            channels=vae.config.in_channels,
            fit="resize",
        )
        self.latents_ = encode_latents(vae, pixels, device=self.settings.device)
        self.latent_ridge_ = RidgeEncoder(per_target=False).fit(
            train.fmri, self.latents_.flatten(1).numpy(), groups=train.stimulus_id
        )
        self.pipeline_ = FmriImagePipeline(
            unet=self.base_.unet,
            scheduler=sampling_scheduler(self.config.sampler, self.base_.scheduler),
            conditioner=self.base_.conditioner,
            vae=vae,
            image_fit="resize",
        ).to(resolve_device(self.settings.device))
        self.pipeline_.set_progress_bar_config(disable=True)
        return self

    def stage1_latents(self, fmri: np.ndarray) -> torch.Tensor:
        predicted = self.latent_ridge_.predict(fmri).astype(np.float32)
        return torch.from_numpy(predicted).view(len(fmri), *self.latents_.shape[1:])

    @torch.no_grad()
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        latents = self.stage1_latents(fmri).to(self.pipeline_.device)
        return self.pipeline_.from_model_space(latents, self.image_size_).cpu().numpy().astype(np.float32)


class BrainDiffuser(BrainDiffuserStage1):
    """Stage 1, then img2img from its latents guided by image-embedding tokens predicted from fMRI."""

    name = "brain-diffuser"

    def fit(self, train: PairedDataset) -> BrainDiffuser:
        super().fit(train)
        embedder = self.base_.conditioner
        if embedder is None:
            raise BaseModelError(
                f"{self.base_.source}: brain-diffuser stage 2 needs the base model's image embedder "
                "(conditioner/); use the small base model, or brain-diffuser-stage1 alone"
            )
        with torch.no_grad():
            tokens = embedder.eval()(self.latents_.flatten(1).to(embedder.device, embedder.dtype)).cpu()
        self.token_shape_ = tuple(tokens.shape[1:])
        self.token_ridge_ = RidgeEncoder(per_target=False).fit(
            train.fmri, tokens.flatten(1).numpy(), groups=train.stimulus_id
        )
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        config, n = self.config, len(fmri)
        tokens = torch.from_numpy(self.token_ridge_.predict(fmri).astype(np.float32)).view(
            n, *self.token_shape_
        )
        start = self.stage1_latents(fmri)
        images = self.pipeline_(
            tokens=tokens.repeat(config.n_samples, 1, 1),
            image_size=self.image_size_,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            init_latents=start.repeat(config.n_samples, 1, 1, 1),
            strength=config.strength,
            generator=sample_generators(self.settings.seed, config.n_samples, n),
        )
        samples = images.reshape(config.n_samples, n, self.image_size_, self.image_size_).astype(np.float32)
        return posterior_rows(self.name, samples)
