"""The `ddpm` method: a conditional pixel-space diffusion model that refines the ridge reconstruction.

With ~100 training trials a diffusion model cannot learn the brain-to-image map on its own; what it can learn
is a prior over images given a noisy linear decoding. So the UNet sees the out-of-fold ridge reconstruction
twice: as an extra input channel (keeping the layout) and, through the conditioner, as cross-attention
tokens. Samples are drawn with few DDIM steps; the reported `ddpm` is the mean of `n_samples` samples (a
posterior-mean estimate) and `ddpm-1` a single sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_diffusion import training as trainer
from fmri_diffusion.augment import random_shift
from fmri_diffusion.conditioning import FmriConditioner
from fmri_diffusion.models import padded_size, small_unet
from fmri_diffusion.objectives import ObjectiveConfig, denoising_loss, sample_timesteps
from fmri_diffusion.pipeline import FmriImagePipeline
from fmri_diffusion.schedulers import Prediction, Sampler, Schedule, sampling_scheduler, training_scheduler
from fmri_diffusion.training import BatchSampler, TrainingConfig
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.runtime import resolve_device


@dataclass(frozen=True)
class DDPMConfig:
    """Model, training and sampling settings of the pixel DDPM (defaults: digit69-sized data on a CPU)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128)
    token_dim: int = 64
    n_tokens: int = 4
    schedule: Schedule = "cosine"
    prediction_type: Prediction = "epsilon"
    condition_dropout: float = 0.1
    max_shift: int = 2
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(max_steps=1500, batch_size=32))
    sampler: Sampler = "ddim"
    num_inference_steps: int = 25
    n_samples: int = 8
    guidance_scale: float = 1.0
    strength: float = 1.0

    def quick(self) -> DDPMConfig:
        """A smoke-test budget: a few steps of everything."""
        return replace(
            self,
            training=replace(self.training, max_steps=20, warmup_steps=2),
            num_inference_steps=4,
            n_samples=2,
        )


class _Denoiser(nn.Module):
    """The trainable pair: conditioner (ridge image -> tokens) and UNet (noisy image + ridge image)."""

    def __init__(self, unet: nn.Module, conditioner: FmriConditioner) -> None:
        super().__init__()
        self.unet = unet
        self.conditioner = conditioner


class PixelDDPM(ReconstructionMethod):
    """Conditional DDPM in pixel space on top of ridge (see the module docstring)."""

    name = "ddpm"

    def __init__(self, settings: MethodSettings | None = None, config: DDPMConfig | None = None) -> None:
        super().__init__(settings)
        config = config or DDPMConfig()
        self.config = config.quick() if self.settings.quick else config

    # ---------------------------------------------------------------- fitting
    def fit(self, train: PairedDataset) -> PixelDDPM:
        config = self.config
        torch.manual_seed(self.settings.seed)
        self.image_size_ = train.image_shape[0]
        ridge_train, self.ridge_ = out_of_fold_ridge(
            train.fmri, train.images, train.stimulus_id, per_target=False, seed=self.settings.seed
        )
        size = padded_size(self.image_size_, len(config.block_out_channels) - 1)
        unet = small_unet(
            sample_size=size,
            in_channels=2,
            out_channels=1,
            cross_attention_dim=config.token_dim,
            block_out_channels=config.block_out_channels,
        )
        conditioner = FmriConditioner(size * size, config.token_dim, n_tokens=config.n_tokens, hidden=256)
        scheduler = training_scheduler(config.schedule, config.prediction_type)
        self.pipeline_ = FmriImagePipeline(unet=unet, scheduler=scheduler, conditioner=conditioner)
        self.pipeline_.set_progress_bar_config(disable=True)

        clean = self.pipeline_.to_model_space(torch.from_numpy(train.images)).cpu()
        spatial = self.pipeline_.to_model_space(torch.from_numpy(np.clip(ridge_train, 0, 1))).cpu()
        sampler = BatchSampler(
            {"clean": clean, "spatial": spatial},
            config.training.batch_size,
            seed=self.settings.seed,
            augment=lambda batch, gen: random_shift(batch, config.max_shift, gen, fill=-1.0),
        )
        training = replace(
            config.training,
            seed=self.settings.seed,
            device=self.settings.device,
            progress=config.training.progress and not self.settings.quick,
        )

        def loss_fn(model: _Denoiser, batch: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
            clean, spatial = batch["clean"], batch["spatial"]
            noise = torch.randn(clean.shape, generator=gen).to(clean.device)
            t = sample_timesteps(len(clean), scheduler, config.objective, gen).to(clean.device)
            noisy = scheduler.add_noise(clean, noise, t)
            keep = (torch.rand(len(clean), generator=gen) >= config.condition_dropout).to(clean.device)
            tokens = model.conditioner.drop(model.conditioner(spatial.flatten(1)), keep)
            spatial = spatial * keep[:, None, None, None]
            prediction = model.unet(torch.cat([noisy, spatial], 1), t, encoder_hidden_states=tokens).sample
            return denoising_loss(prediction, clean, noise, noisy, t, scheduler, config.objective)

        work_dir = self.settings.work_dir
        self.training_ = trainer.train(
            _Denoiser(unet, conditioner),
            loss_fn,
            sampler,
            training,
            out_dir=None if work_dir is None else work_dir / self.name,
            description=self.name,
        )
        self.pipeline_.scheduler = sampling_scheduler(config.sampler, scheduler)
        self.pipeline_.to(resolve_device(self.settings.device))
        return self

    # ------------------------------------------------------------- predicting
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        samples = self.sample(fmri, self.config.n_samples)
        return {self.name: samples.mean(axis=0), f"{self.name}-1": samples[0]}

    def sample(self, fmri: np.ndarray, n_samples: int) -> np.ndarray:
        """[n_samples, n, H, W] samples; sample k of trial i is seeded by (seed, k, i), so runs repeat."""
        config = self.config
        ridge = torch.from_numpy(np.clip(self.ridge_.predict(fmri), 0, 1).reshape(len(fmri), *self._shape()))
        spatial = self.pipeline_.to_model_space(ridge).repeat(n_samples, 1, 1, 1)
        generators = [
            torch.Generator().manual_seed(hash((self.settings.seed, k, i)) % 2**63)
            for k in range(n_samples)
            for i in range(len(fmri))
        ]
        images = self.pipeline_(
            spatial.flatten(1),
            spatial,
            image_size=self.image_size_,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            init_image=ridge.repeat(n_samples, 1, 1) if config.strength < 1 else None,
            strength=config.strength,
            generator=generators,
        )
        return images.reshape(n_samples, len(fmri), *self._shape()).astype(np.float32)

    def _shape(self) -> tuple[int, int]:
        return (self.image_size_, self.image_size_)
