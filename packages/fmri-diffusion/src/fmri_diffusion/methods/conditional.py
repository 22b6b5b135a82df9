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
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import AutoencoderKL
from torch import nn

from fmri_data.dataset import PairedDataset
from fmri_diffusion.methods.corpus_prior import CorpusPrimedMethod, check_corpus_finetune, stand_in_condition
from fmri_diffusion.models.builders import small_unet
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.schedulers import Prediction, Sampler, Schedule, sampling_scheduler, training_scheduler
from fmri_diffusion.training.autoencoder import compile_autoencoder
from fmri_diffusion.training.denoising import ConditionedUNet, DenoisingStep
from fmri_diffusion.training.objectives import ObjectiveConfig
from fmri_encoders.training import BatchSampler, TrainingConfig
from fmri_encoders.training import train as train_model
from fmri_encoders.training.sampling import Augment


@dataclass(frozen=True)
class DiffusionConfig:
    """UNet, conditioning, training and sampling settings (defaults sized for digit69 on a laptop CPU).
    sample_weight: temper of the encoding model's likelihood weighing the samples (methods.base), 0 = the
    plain mean; encoding_noise: that likelihood's (and guidance's) voxel noise, "independent" or "correlated"
    (fmri_encoders.noise). corpus_finetune: above 0, the networks first pre-train on the run's prior corpus
    (methods.corpus_prior: once per recipe and corpus, cached) and each fit trains this fraction of each
    stage's steps from there; 0 = they learn from the training images alone."""

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
    sample_batch_size: int = 256
    guidance_scale: float = 1.0
    strength: float = 1.0
    likelihood_weight: float = 0.0
    sample_weight: float = 0.0
    encoding_voxels: int = 500
    encoding_model: str = "auto"
    encoding_noise: str = "independent"
    corpus_finetune: float = 0.0

    def __post_init__(self) -> None:
        check_corpus_finetune(self.corpus_finetune)

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


class ConditionalDiffusion(CorpusPrimedMethod):
    """fit: first stage (subclass) -> train the conditional UNet; predict: sample around the first stage."""

    config_class: type[DiffusionConfig] = DiffusionConfig
    saved_as: ClassVar[str] = "pipeline"
    pixel_space: ClassVar[bool] = False  # pixel models clip predicted clean images to [-1, 1] while sampling

    # ------------------------------------------------------- subclass hooks
    @abstractmethod
    def _fit_model_space(self, images: np.ndarray) -> tuple[AutoencoderKL | None, torch.Tensor]:
        """Return (vae or None, the images in model space), fitting what that space needs (ldm: the
        autoencoder, from `warm_start_`'s where there is one)."""

    @abstractmethod
    def _fit_first_stage(
        self, train: PairedDataset
    ) -> tuple[AutoencoderKL | None, torch.Tensor, torch.Tensor]:
        """Return (vae or None, clean targets, out-of-fold spatial conditions), both in model space."""

    @abstractmethod
    def _spatial_condition(self, fmri: np.ndarray) -> torch.Tensor:
        """The first stage's decoding of test fMRI, in model space [n, c, h, w]."""

    @abstractmethod
    def _model_space_from_pipeline(self) -> None:
        """After loading: what the first stage knows about model space, read off the loaded pipeline."""

    # ---------------------------------------------------------------- fitting
    def fit_parts(self, train: PairedDataset) -> None:
        self.start_from_corpus()
        torch.manual_seed(self.settings.seed)
        vae, clean, spatial = self._fit_first_stage(train)
        self._fit_denoiser(vae, {"clean": clean, "spatial": spatial}, self._augmented_batch, self.name)

    def fit_prior(self, images: np.ndarray) -> None:
        torch.manual_seed(self.settings.seed)
        vae, clean = self._fit_model_space(images)
        centre_and_spread = (float(clean.mean()), float(clean.std()))

        def augmented(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
            batch = self._augment(batch, generator)
            spatial = stand_in_condition(batch["clean"], *centre_and_spread, generator)
            return {**batch, "spatial": spatial, "condition": spatial.flatten(1)}

        self._fit_denoiser(vae, {"clean": clean}, augmented, f"{self.name} prior")

    def _fit_denoiser(
        self, vae: AutoencoderKL | None, data: dict[str, torch.Tensor], augment: Augment, description: str
    ) -> None:
        """Train the conditional UNet and its conditioner (from `warm_start_`'s where there is one) on
        model-space `data`, then build the sampling pipeline."""
        config = self.config
        clean = data["clean"]
        unet, conditioner = build_denoiser(config, channels=clean.shape[1], size=clean.shape[-1])
        if self.warm_start_ is not None:
            unet.load_state_dict(self.warm_start_.pipeline_.unet.state_dict())
            conditioner.load_state_dict(self.warm_start_.pipeline_.conditioner.state_dict())
        if self.settings.compile:
            unet.compile()
        scheduler = training_scheduler(config.schedule, config.prediction_type, clip_sample=self.pixel_space)
        training = self.training(config.training)  # the run's batch size, if it sets one
        sampler = BatchSampler(data, training.batch_size, seed=self.settings.seed, augment=augment)
        self.training_ = train_model(
            ConditionedUNet(unet, conditioner),
            DenoisingStep(scheduler, config.objective, config.condition_dropout),
            sampler,
            training,
            **self.checkpointing(),
            description=description,
        )
        self.pipeline_ = self.make_pipeline(
            unet=unet,
            scheduler=sampling_scheduler(config.sampler, scheduler),
            conditioner=conditioner,
            vae=vae,
        )

    def _augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return batch

    def _augmented_batch(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The subclass's augmentation, then the conditioner's input: the (shifted) spatial condition."""
        batch = self._augment(batch, generator)
        return {**batch, "condition": batch["spatial"].flatten(1)}

    # ------------------------------------------------------------ persistence
    def save_parts(self, folder: Path) -> dict[str, Any]:
        """The pipeline in diffusers' layout (FmriImagePipeline.from_pretrained reads it alone) and ridge."""
        self.pipeline_.save_pretrained(folder)
        self.ridge_.save(folder / "ridge")
        return {}

    def load_parts(self, folder: Path, manifest: dict[str, Any], base: str | Path | None) -> None:
        self.load_pipeline(folder)
        self.ridge_ = self.load_ridge(folder / "ridge")

    def save_prior(self, folder: Path) -> None:
        self.pipeline_.save_pretrained(folder)

    def load_prior(self, folder: Path) -> None:
        self.load_pipeline(folder)

    def load_pipeline(self, folder: Path) -> None:
        """The pipeline saved in `folder` (diffusers' layout), sampling with this config's sampler."""
        saved = FmriImagePipeline.saved_components(folder, progress=self.settings.shows_progress())
        saved["scheduler"] = sampling_scheduler(self.config.sampler, saved["scheduler"])
        self.pipeline_ = self.make_pipeline(**saved)
        if self.settings.compile:  # as it trained: see _fit_denoiser
            self.pipeline_.unet.compile()
            if self.pipeline_.vae is not None:
                compile_autoencoder(self.pipeline_.vae)
        self._model_space_from_pipeline()

    # ------------------------------------------------------------- predicting
    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        """The first stage's decoding, as the conditioner's input, the UNet's extra channels and (below
        strength 1) the start of sampling."""
        spatial = self._spatial_condition(fmri)
        inputs = {"condition": spatial.flatten(1), "spatial_condition": spatial}
        if self.config.strength < 1:
            inputs["init_latents"] = spatial
        return inputs
