"""What the `ddpm` and `ldm` methods share: a conditional diffusion model on top of a ridge first stage.

With ~100 training trials a diffusion model cannot learn the brain-to-image map on its own; what it can learn
is a prior over images given a noisy linear decoding. So the UNet sees the out-of-fold ridge decoding (in its
own space: pixels for `ddpm`, autoencoder latents for `ldm`) twice: as extra input channels, which keep the
layout, and through the conditioner as cross-attention tokens. Sampling uses a few DDIM (or DPM-Solver++)
steps; the method's own row is the mean of `n_samples` samples (a posterior-mean estimate) and `<name>-1` is
a single sample. No sample is ever chosen by comparing it with the truth.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from torch import nn

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_diffusion.models.builders import small_unet
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.schedulers import Prediction, Sampler, Schedule, sampling_scheduler, training_scheduler
from fmri_diffusion.training.denoising import ConditionedUNet, DenoisingStep
from fmri_diffusion.training.objectives import ObjectiveConfig
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import loop as trainer
from fmri_encoders.training import loss_curves
from fmri_encoders.training.loop import BatchSampler, TrainingConfig, training_for


@dataclass(frozen=True)
class DiffusionConfig:
    """UNet, conditioning, training and sampling settings (defaults sized for digit69 on a laptop CPU)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128)
    token_dim: int = 64
    n_tokens: int = 4
    conditioner_hidden: int = 256
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

    def quick(self) -> DiffusionConfig:
        """A smoke-test budget: a narrow UNet and a few steps of everything."""
        return replace(
            self,
            block_out_channels=tuple(8 * (i + 1) for i in range(len(self.block_out_channels))),
            token_dim=8,
            conditioner_hidden=32,
            training=replace(self.training, max_steps=10, batch_size=8, warmup_steps=1, progress=False),
            num_inference_steps=3,
            n_samples=2,
        )


def build_denoiser(config: DiffusionConfig, channels: int, size: int) -> tuple[nn.Module, FmriConditioner]:
    """The UNet (noisy sample + spatial condition in, `channels` out) and its conditioner, at `size`."""
    unet = small_unet(
        sample_size=size,
        in_channels=2 * channels,
        out_channels=channels,
        cross_attention_dim=config.token_dim,
        block_out_channels=config.block_out_channels,
    )
    conditioner = FmriConditioner(
        channels * size * size, config.token_dim, n_tokens=config.n_tokens, hidden=config.conditioner_hidden
    )
    return unet, conditioner


class ConditionalDiffusion(ReconstructionMethod):
    """fit: first stage (subclass) -> train the conditional UNet; predict: sample around the first stage."""

    config_class: type[DiffusionConfig] = DiffusionConfig
    pixel_space: bool = False  # pixel models clip predicted clean images to [-1, 1] while sampling

    def __init__(self, settings: MethodSettings | None = None, config: DiffusionConfig | None = None) -> None:
        super().__init__(settings)
        self.config = self.settings.configure(config or self.config_class())

    # ------------------------------------------------------- subclass hooks
    @abstractmethod
    def _fit_first_stage(
        self, train: PairedDataset
    ) -> tuple[AutoencoderKL | None, torch.Tensor, torch.Tensor]:
        """Return (vae or None, clean targets, out-of-fold spatial conditions), both in model space."""

    @abstractmethod
    def _spatial_condition(self, fmri: np.ndarray) -> torch.Tensor:
        """The first stage's decoding of test fMRI, in model space [n, c, h, w]."""

    # ---------------------------------------------------------------- fitting
    def fit(self, train: PairedDataset) -> ConditionalDiffusion:
        config = self.config
        torch.manual_seed(self.settings.seed)
        self.image_size_ = train.image_shape[0]
        vae, clean, spatial = self._fit_first_stage(train)
        unet, conditioner = build_denoiser(config, channels=clean.shape[1], size=clean.shape[-1])
        scheduler = training_scheduler(config.schedule, config.prediction_type, clip_sample=self.pixel_space)
        sampler = BatchSampler(
            {"clean": clean, "spatial": spatial},
            config.training.batch_size,
            seed=self.settings.seed,
            augment=self._augmented_batch,
        )

        training = training_for(config.training, self.settings)
        work_dir = self.settings.work_dir
        self.training_ = trainer.train(
            ConditionedUNet(unet, conditioner),
            DenoisingStep(scheduler, config.objective, config.condition_dropout),
            sampler,
            training,
            out_dir=None if work_dir is None else work_dir / self.name,
            resume="latest" if self.settings.resume and work_dir is not None else None,
            description=self.name,
        )
        self.pipeline_ = FmriImagePipeline(
            unet=unet,
            scheduler=sampling_scheduler(config.sampler, scheduler),
            conditioner=conditioner,
            vae=vae,
        )
        self.pipeline_.set_progress_bar_config(**sampling_progress(self.settings, self.name))
        self.pipeline_.to(resolve_device(self.settings.device))
        if work_dir is not None:
            self.pipeline_.save_pretrained(work_dir / self.name / "pipeline")
        return self

    def _augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return batch

    def _augmented_batch(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The subclass's augmentation, then the conditioner's input: the (shifted) spatial condition."""
        batch = self._augment(batch, generator)
        return {**batch, "condition": batch["spatial"].flatten(1)}

    # ------------------------------------------------------------- predicting
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def artefacts(self) -> dict[str, Path]:
        return loss_curves(loss_curve=getattr(self, "training_", None))

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        return posterior_rows(self.name, self.sample(fmri, self.config.n_samples))

    def sample(self, fmri: np.ndarray, n_samples: int) -> np.ndarray:
        """[n_samples, n, H, W]; sample k of trial i is seeded by (seed, k, i), so runs repeat exactly."""
        config = self.config
        spatial = self._spatial_condition(fmri).to(self.pipeline_.device).repeat(n_samples, 1, 1, 1)
        generators = sample_generators(self.settings.seed, n_samples, len(fmri))
        images = self.pipeline_(
            spatial.flatten(1),
            spatial,
            image_size=self.image_size_,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            init_latents=spatial if config.strength < 1 else None,
            strength=config.strength,
            generator=generators,
        )
        return images.reshape(n_samples, len(fmri), self.image_size_, self.image_size_).astype(np.float32)


def sample_generators(seed: int, n_samples: int, n_trials: int) -> list[torch.Generator]:
    """One generator per (sample k, trial i), k-major, seeded by (seed, k, i): reruns repeat exactly."""
    return [
        torch.Generator().manual_seed(hash((seed, k, i)) % 2**63)
        for k in range(n_samples)
        for i in range(n_trials)
    ]


def sampling_progress(settings: MethodSettings, name: str) -> dict[str, Any]:
    """A pipeline's progress-bar settings: a transient bar per sampling batch on a terminal; none in a log
    file, under --quick or --no-progress."""
    return {
        "disable": None if settings.shows_progress() else True,
        "leave": False,
        "desc": f"{name} sampling",
    }


def posterior_rows(name: str, samples: np.ndarray) -> dict[str, np.ndarray]:
    """A stochastic method's report rows from [n_samples, n, H, W]: the posterior mean and one sample."""
    return {name: samples.mean(axis=0), f"{name}-1": samples[0]}
