"""Brain-Diffuser (Ozcelik & VanRullen 2023): two stages on one base model, every stage saved and reusable.

- `brain-diffuser-stage1`: ridge from fMRI to the base autoencoder's latents; decoding them gives a coarse
  image (the original uses VDVAE latents; here any diffusers AutoencoderKL: the small base model's, or a
  user's Stable Diffusion VAE with --pretrained).
- `brain-diffuser`: ridge from fMRI to the conditioning model's image tokens (the original: CLIP vision,
  and CLIP text where captions exist), then image-to-image diffusion from the stage-1 latents at
  `strength` (0.75 with 50 DDIM steps, as published) guided by the predicted tokens. Image tokens come from
  the small base model's `conditioner/` (an embedder of latents), or from the CLIP `image_encoder/` of a
  diffusers image-variation model given with --pretrained (one token, its projected image embedding).
  Where the training trials have captions and the base has `text_encoder/` + `tokenizer/`, ridge also
  predicts the caption tokens and the noise prediction mixes text and image guidance by `mixing`.

The original's prior (Versatile Diffusion) knows natural images; the small base here knows only the
simulator's patterns, blobs and strokes, and at strength 0.75 it pulls images towards them. So before
stage 2 the prior adapts to the training images as an image-variation model (the frozen embedder's tokens
of each training image condition its denoising; no fMRI and no test image is involved): `prior_adapter`
"full" for the small base, "lora" on every attention projection for a user's pretrained base, "none" to
skip. Every ridge is fitted on training trials only; the reported `brain-diffuser` row is the mean of
`n_samples` samples and `brain-diffuser-1` one sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from diffusers import UNet2DConditionModel

from fmri_data.dataset import PairedDataset
from fmri_diffusion.methods.base import DiffusionMethod
from fmri_diffusion.methods.brain_diffuser.parts import GuideRidges, LatentDecoding
from fmri_diffusion.methods.brain_diffuser.prior import adapt_prior
from fmri_diffusion.priors import base_model_for
from fmri_diffusion.priors.loading import BaseModelError, load_base_model
from fmri_diffusion.priors.small import SmallBaseConfig
from fmri_diffusion.schedulers import Sampler, sampling_scheduler
from fmri_diffusion.training.denoising import FinetuneConfig
from fmri_diffusion.training.lora import save_lora
from fmri_encoders.training import TrainingConfig, TrainingResult

PriorAdapter = Literal["auto", "full", "lora", "none"]


@dataclass(frozen=True)
class BrainDiffuserConfig:
    """Stage-2 sampling and the prior's adaptation to the training images.

    strength and steps are the published ones; guidance_scale 1 (no classifier-free guidance) suits the
    small base, pass the published 7.5 with a real pretrained model. mixing: weight of caption guidance
    (None: DEFAULT_MIXING where captions and a text encoder exist, else 0).
    """

    base: SmallBaseConfig = field(default_factory=SmallBaseConfig)
    strength: float = 0.75
    num_inference_steps: int = 50
    guidance_scale: float = 1.0
    sampler: Sampler = "ddim"
    n_samples: int = 8
    sample_batch_size: int = 64
    mixing: float | None = None
    likelihood_weight: float = 0.0
    encoding_voxels: int = 500
    prior_adapter: PriorAdapter = "auto"
    prior_lora_rank: int = 16
    prior_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            max_steps=1500, batch_size=32, learning_rate=1e-3, warmup_steps=40
        )
    )

    def quick(self) -> BrainDiffuserConfig:
        tiny = TrainingConfig(max_steps=3, batch_size=8, warmup_steps=1, progress=False)
        return replace(self, base=self.base.quick(), num_inference_steps=4, n_samples=2, prior_training=tiny)


class BrainDiffuserMethod(DiffusionMethod):
    """What both Brain-Diffuser methods share: the base model, stage 1, the pipeline and the saved stages
    (`work_dir/<name>/stages`: the fitted parts, and a manifest naming the base model they belong to)."""

    config_class = BrainDiffuserConfig
    curves: ClassVar[dict[str, str]] = {}
    saved_as: ClassVar[str] = "stages"

    def _fit_stage1(self, train: PairedDataset) -> torch.Tensor:
        """Base model, stage 1 and a pipeline on the base UNet; returns the training images' latents."""
        self.base_ = base_model_for(self.settings, self.config.base, self.image_size_)
        self.stage1_, latents = LatentDecoding.fit(train, self.base_, self.settings.device)
        self._build_pipeline(self.base_.unet)
        return latents

    def _build_pipeline(self, unet: UNet2DConditionModel) -> None:
        self.pipeline_ = self.make_pipeline(
            unet=unet,
            scheduler=sampling_scheduler(self.config.sampler, self.base_.scheduler),
            conditioner=self.base_.conditioner,
            vae=self.base_.vae,
            image_fit="resize",
        )

    def stage1_latents(self, fmri: np.ndarray) -> torch.Tensor:
        return self.stage1_.predict(fmri)

    # ------------------------------------------------------------ saved stages
    def save_parts(self, folder: Path) -> dict[str, Any]:
        """Stage 1 (and stage 2's parts) plus the base model they belong to, which is read again on load."""
        return {"base": self.base_.source, **self.stage1_.save(folder), **self._save_stage2(folder)}

    def _save_stage2(self, folder: Path) -> dict[str, Any]:
        return {}

    def load_parts(self, folder: Path, manifest: dict[str, Any], base: str | Path | None) -> None:
        self.base_ = load_base_model(base or manifest["base"])
        self.stage1_ = LatentDecoding.load(folder, manifest)
        self._load_stage2(folder, manifest)

    def _load_stage2(self, folder: Path, manifest: dict[str, Any]) -> None:
        self._build_pipeline(self.base_.unet)


class BrainDiffuserStage1(BrainDiffuserMethod):
    """fMRI -> autoencoder latents (ridge) -> decoded image; deterministic, so one row."""

    name = "brain-diffuser-stage1"
    samples_with_pipeline = False

    def fit_parts(self, train: PairedDataset) -> None:
        self._fit_stage1(train)

    @torch.no_grad()
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        latents = self.stage1_latents(fmri).to(self.pipeline_.device)
        return self.pipeline_.from_model_space(latents, self.image_size_).cpu().numpy().astype(np.float32)

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: self.predict(fmri)}

    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        return {"init_latents": self.stage1_latents(fmri)}


class BrainDiffuser(BrainDiffuserMethod):
    """Stage 1, then img2img from its latents guided by image (and caption) tokens predicted from fMRI."""

    name = "brain-diffuser"
    curves: ClassVar[dict[str, str]] = {"prior_loss_curve": "prior_training_"}

    def fit_parts(self, train: PairedDataset) -> None:
        latents = self._fit_stage1(train)
        self.guides_, tokens = GuideRidges.fit(
            train, self.base_, latents, self.config.mixing, self.settings.device
        )
        self.adapter_ = self._prior_adapter()
        if self.adapter_ != "none":
            unet, self.prior_training_ = self._adapt_prior(latents, tokens)
            self._build_pipeline(unet.eval())

    def _prior_adapter(self) -> Literal["full", "lora", "none"]:
        adapter = self.config.prior_adapter
        if adapter == "auto":
            return "lora" if self.settings.pretrained else "full"
        return adapter

    def _adapt_prior(
        self, latents: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[UNet2DConditionModel, TrainingResult]:
        config = self.config
        finetune_config = FinetuneConfig(
            adapter=self.adapter_,
            lora_rank=config.prior_lora_rank,
            lora_targets="all",
            condition_dropout=config.base.condition_dropout,
            training=self.training(config.prior_training),
        )
        return adapt_prior(
            self.pipeline_.unet,
            self.base_,
            self.guides_,
            latents,
            tokens,
            finetune_config,
            condition_noise=config.base.condition_noise,
            description=f"{self.name} prior",
            **self.checkpointing("prior"),
        )

    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        return {**self.guides_.predict(fmri), "init_latents": self.stage1_latents(fmri)}

    def sampling_options(self) -> dict[str, float]:
        """Caption mixing as fitted, or as `--mixing` sets it for reloaded stages with a caption guide."""
        mixing = self.config.mixing
        return {"mixing": self.guides_.mixing if mixing is None else mixing}

    # ------------------------------------------------------------ saved stages
    def _save_stage2(self, folder: Path) -> dict[str, Any]:
        if self.adapter_ == "lora":
            save_lora(self.pipeline_.unet, folder / "prior_lora")
        elif self.adapter_ == "full":
            self.pipeline_.unet.save_pretrained(folder / "prior_unet")
        return {**self.guides_.save(folder), "prior_adapter": self.adapter_}

    def _load_stage2(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.guides_ = GuideRidges.load(folder, manifest)
        if self.config.mixing and self.guides_.text is None:
            raise BaseModelError(
                f"{folder} holds no caption guide (fitted without captions); load it with --mixing 0"
            )
        self.adapter_ = manifest["prior_adapter"]
        unet = self.base_.unet
        if self.adapter_ == "full":
            unet = UNet2DConditionModel.from_pretrained(folder / "prior_unet", local_files_only=True)
        self._build_pipeline(unet.eval())
        if self.adapter_ == "lora":
            self.pipeline_.load_lora_weights(str(folder / "prior_lora"))
