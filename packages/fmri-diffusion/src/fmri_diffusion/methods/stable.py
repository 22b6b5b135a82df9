"""The Stable-Diffusion routes: `sd-direct`, `sd-lora`, `sd-full` and `sd-control`.

All three start from a base model (`--pretrained` Stable Diffusion folder, or the small one pre-trained here;
see fmri_diffusion.priors.loading) and replace its text encoder by an fMRI conditioner that emits K tokens of
the UNet's cross_attention_dim. They differ in what else learns:
- `sd-direct`: the UNet stays frozen; only the conditioner learns to steer it.
- `sd-lora`: LoRA adapters on the UNet's cross-attention projections learn with the conditioner.
- `sd-full`: the whole UNet learns with the conditioner (the Miyawaki project's fine-tune), with gradient
  checkpointing when the base is a pretrained (Stable-Diffusion-sized) one.
- `sd-control`: a ControlNet copied from the UNet learns to add the ridge reconstruction's layout.
The conditioner's input is, by default, ridge's prediction of the image's latents (out-of-fold for the
training trials; see tiny-data lesson 1), the fMRI itself (`condition="fmri"`), or the fMRI's embedding by a
contrastive (CLIP-style) encoder trained on the training trials (`condition="contrastive"`, the digit69
project's design; out-of-fold for the training trials too). With the small base
model the conditioner starts as the base's own image embedder, whose input is exactly such latents.
The reported row is the posterior mean of `n_samples` samples and `<name>-1` one sample; no sample is
chosen by looking at the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import diffusers
import numpy as np
import torch
from diffusers import ControlNetModel

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings
from fmri_diffusion.methods.base import DiffusionMethod
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.priors import base_model_for
from fmri_diffusion.priors.loading import BaseModel, BaseModelError, load_base_model, refuse_versatile
from fmri_diffusion.priors.small import SmallBaseConfig
from fmri_diffusion.schedulers import Sampler, sampling_scheduler
from fmri_diffusion.training.denoising import Adapter, ConditionedUNet, FinetuneConfig, finetune, prepare_unet
from fmri_diffusion.training.lora import save_lora
from fmri_encoders.contrastive import ContrastiveEncoder
from fmri_encoders.contrastive.training import DEFAULT_TRAINING as CONTRASTIVE_TRAINING
from fmri_encoders.methods.inverse_retinotopy import InverseRetinotopy
from fmri_encoders.out_of_fold import out_of_fold_embeddings, out_of_fold_ridge
from fmri_encoders.training import TrainingConfig

START_IR = "inverse-retinotopy"
"""The start (StableConfig.start) that another decoder of this toolkit reconstructs."""
STARTS = ("ridge-latents", "ridge-pixels", START_IR)
DECODES = ("vae", "residual")


@dataclass(frozen=True)
class StableConfig:
    """Base model, conditioner, fine-tune and sampling settings of the sd-* methods.

    strength: sampling starts from ridge's predicted latents noised to this level (img2img, as in
    Brain-Diffuser), 1 = from pure noise. 0.2 was the best of 1.0/0.5/0.35/0.2 for sd-lora on a simulated
    data set with another seed (simulate_miyawaki(seed=7)), never on a data set reported here; cross-
    attention tokens alone carry too little layout for pixel metrics (pcc 0.30 at strength 1 there).
    start: what img2img starts from, ridge's prediction of the latents, the autoencoder's encoding of the
    pixel ridge reconstruction (ridge to pixels decodes better than ridge to latents then the decoder), or
    of `inverse-retinotopy`'s (fmri_encoders.methods.inverse_retinotopy, fitted on the same training trials;
    K x K binary-patch stimuli only): on Miyawaki's design ridge's images lie in the span of a fold's 16
    training figures, while that decoder judges any pattern of patches, so the diffusion prior refines an
    image that already generalises. It is fitted with its own default grid (fmri_encoders'
    InverseRetinotopyConfig), chosen on its own inner folds; the sd route's grid never reaches it. Chosen on
    validation, each start value fits its own probe: the first stage is part of the fit.
    decode: "vae", the decoded sample; or "residual" (img2img only), the start's pixel image (ridge's, or
    inverse-retinotopy's) plus what sampling changed in the decoded image (decoded sample − decoded start):
    the autoencoder's error on the blurry start, which cost sd-lora more pcc on Miyawaki than sampling
    gained, then never reaches the output.
    (Likelihood guidance still steers the decoded sample, whose change is what the output keeps.)
    likelihood_weight: encoding-model guidance while sampling (fmri_encoders.encoding, over the
    `encoding_voxels` best-predicted voxels), 0 = off; encoding_model: "ridge", "prf" (a receptive field
    per voxel, for K x K binary-patch stimuli) or "auto" (prf where the stimuli are patches); encoding_noise:
    its voxels' noise, "independent" or "correlated" (fmri_encoders.noise);
    sample_weight: temper of its likelihood weighing the samples (methods.base), 0 = their plain mean.
    """

    base: SmallBaseConfig = field(default_factory=SmallBaseConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    condition: Literal["ridge", "fmri", "contrastive"] = "ridge"
    start: Literal["ridge-latents", "ridge-pixels", "inverse-retinotopy"] = "ridge-latents"
    decode: Literal["vae", "residual"] = "vae"
    contrastive_epochs: int = 100
    n_tokens: int = 8
    conditioner_hidden: int = 1024
    sampler: Sampler = "ddim"
    num_inference_steps: int = 25
    guidance_scale: float = 1.0
    n_samples: int = 8
    strength: float = 0.2
    sample_batch_size: int = 64
    likelihood_weight: float = 0.0
    sample_weight: float = 0.0
    encoding_voxels: int = 500
    encoding_model: str = "auto"
    encoding_noise: str = "independent"

    def __post_init__(self) -> None:
        if self.start not in STARTS or self.decode not in DECODES:
            raise DataError(
                f"unknown start {self.start!r} or decode {self.decode!r}; start is one of "
                f"{', '.join(STARTS)} and decode one of {', '.join(DECODES)}"
            )
        if self.decode == "residual" and self.strength >= 1:
            raise DataError(
                "decode 'residual' adds what sampling changed to the start's image, so it needs an img2img "
                "start: set strength below 1 or decode 'vae'"
            )

    def quick(self) -> StableConfig:
        tiny = TrainingConfig(max_steps=5, batch_size=8, warmup_steps=1, progress=False)
        return replace(
            self,
            base=self.base.quick(),
            finetune=replace(self.finetune, lora_rank=2, training=tiny),
            n_tokens=2,
            conditioner_hidden=32,
            contrastive_epochs=2,
            num_inference_steps=3,
            n_samples=2,
        )


class StableDiffusionMethod(DiffusionMethod):
    """fit: base model -> training-image latents -> conditioner (+ adapter) fine-tune; predict: sample."""

    config_class = StableConfig
    saved_as: ClassVar[str] = "finetuned"
    adapter: ClassVar[Adapter] = "none"
    uses_control: ClassVar[bool] = False
    samples_pretrained: ClassVar[bool] = True

    # ---------------------------------------------------------------- fitting
    def check_stimuli(self, stimuli: PairedDataset) -> None:
        """A start from inverse-retinotopy (set or offered to validation) needs its patch design, and the
        base model must be a Stable Diffusion folder (a Versatile Diffusion one is brain-diffuser's)."""
        super().check_stimuli(stimuli)
        instead = "use --start ridge-latents or ridge-pixels"
        self.refuse_without_patch_design(stimuli.images, "start", START_IR, instead)
        if self.settings.pretrained:
            refuse_versatile(self.settings.pretrained, allow_download=self.settings.allow_download)

    def fit_parts(self, train: PairedDataset) -> None:
        config, settings = self.config, self.settings
        if config.start == START_IR:
            self.first_stage_ = InverseRetinotopy(self._first_stage_settings()).fit(train)
        base = base_model_for(self.settings, self.config.base, self.image_size_)
        self.resolution_, channels = base.resolution, base.vae.config.in_channels
        clean = base.encode_images(train.images, settings.device)
        self.latent_shape_ = tuple(clean.shape[1:])
        ridge_train, self.ridge_ = out_of_fold_ridge(
            train.fmri, clean.flatten(1).numpy(), train.stimulus_id, per_target=False, **self.ridge_options()
        )
        if config.condition in ("ridge", "fmri"):
            condition = ridge_train if config.condition == "ridge" else train.fmri
        elif config.condition == "contrastive":
            condition, self.contrastive_ = out_of_fold_embeddings(
                train.fmri,
                train.images,
                train.stimulus_id,
                seed=settings.seed,
                epochs=config.contrastive_epochs,
                training=self.training(CONTRASTIVE_TRAINING),
            )
        else:
            raise DataError(f"unknown condition {config.condition!r}; use ridge, fmri or contrastive")
        tensors = {"clean": clean, "condition": torch.from_numpy(np.asarray(condition, dtype=np.float32))}

        torch.manual_seed(settings.seed)
        finetune_config = replace(
            config.finetune,
            adapter=self.adapter,
            gradient_checkpointing=config.finetune.gradient_checkpointing
            or settings.gradient_checkpointing
            or (self.adapter == "full" and bool(settings.pretrained)),
            compile=self._compiles(),
            training=self.training(config.finetune.training),
        )
        unet = prepare_unet(base.unet, finetune_config)
        conditioner = self._conditioner(base, tensors["condition"].shape[1])
        controlnet = None
        if self.uses_pixel_ridge():
            pixel_train, self.pixel_ridge_ = out_of_fold_ridge(
                train.fmri, train.images, train.stimulus_id, per_target=False, **self.ridge_options()
            )
        if self.uses_control:
            controlnet = _controlnet_for(base)
            tensors["control"] = self._control_pixels(pixel_train, channels)
        self.training_ = finetune(
            ConditionedUNet(unet, conditioner, controlnet),
            tensors,
            base.scheduler,
            finetune_config,
            **self.checkpointing(),
            description=self.name,
        )
        self.pipeline_ = self.make_pipeline(
            unet=unet,
            scheduler=sampling_scheduler(config.sampler, base.scheduler),
            conditioner=conditioner,
            vae=base.vae,
            controlnet=controlnet,
            image_fit="resize",
        )
        self.base_source_ = base.source

    def uses_pixel_ridge(self) -> bool:
        """Whether a ridge to pixels is fitted: for sd-control's control image, the img2img start or the
        residual decoding from ridge's start."""
        config = self.config
        residual_from_ridge = config.decode == "residual" and config.start != START_IR
        return self.uses_control or config.start == "ridge-pixels" or residual_from_ridge

    def _first_stage_settings(self) -> MethodSettings:
        """The run's settings for the inverse-retinotopy start, without the sd route's grid and sampling
        overrides (its own default grid is chosen on its own inner folds)."""
        return replace(self.settings, choices={}, sampling={})

    def records(self) -> dict[str, Any]:
        """Validation's record, and inverse-retinotopy's own choice where it is the start (as an ensemble's
        members' are: "<name> / inverse-retinotopy" in metrics.json)."""
        if self.config.start != START_IR:
            return super().records()
        return super().records() | {"members": {START_IR: self.first_stage_.records()}}

    def timings(self) -> dict[str, float]:
        """Validation's seconds, the inverse-retinotopy start's own choice on its inner folds included."""
        if self.config.start != START_IR:
            return super().timings()
        own = super().timings().get("validation", 0.0)
        return {"validation": own + self.first_stage_.timings()["validation"]}

    def _conditioner(self, base: BaseModel, in_features: int) -> FmriConditioner:
        """The base's image embedder when ridge feeds it the latents it was trained on, else a new one."""
        embedder = base.conditioner
        if (
            embedder is not None
            and self.config.condition == "ridge"
            and embedder.config.in_features == in_features
        ):
            return embedder
        config = self.config
        return FmriConditioner(
            in_features, base.token_dim, n_tokens=config.n_tokens, hidden=config.conditioner_hidden
        )

    def _control_pixels(self, images: np.ndarray, channels: int) -> torch.Tensor:
        """Ridge reconstructions [n, H, W] -> ControlNet images [n, C, S, S] in [0, 1]."""
        clipped = torch.from_numpy(np.clip(images, 0, 1).astype(np.float32))
        return (to_pixels(clipped, self.resolution_, channels=channels, fit="resize") + 1) / 2

    # ------------------------------------------------------------ persistence
    def save_parts(self, folder: Path) -> dict[str, Any]:
        """What the fine-tune added to the base: conditioner/, lora/ (diffusers' LoRA format) or unet/,
        controlnet/, scheduler/, and the ridges; the manifest names the base model to read again."""
        pipeline = self.pipeline_
        pipeline.conditioner.save_pretrained(folder / "conditioner")
        if self.adapter == "lora":
            save_lora(pipeline.unet, folder / "lora")
        elif self.adapter == "full":
            pipeline.unet.save_pretrained(folder / "unet")
        if pipeline.controlnet is not None:
            pipeline.controlnet.save_pretrained(folder / "controlnet")
        if self.uses_pixel_ridge():
            self.pixel_ridge_.save(folder / "pixel_ridge")
        if self.config.start == START_IR:
            self.first_stage_.save(folder / START_IR)
        pipeline.scheduler.save_pretrained(folder / "scheduler")
        self.ridge_.save(folder / "ridge")
        if self.config.condition == "contrastive":
            self.contrastive_.save(folder / "contrastive")
        return {
            "base": self.base_source_,
            "condition": self.config.condition,
            "start": self.config.start,
            "decode": self.config.decode,
            "scheduler": type(pipeline.scheduler).__name__,
            "latent_shape": list(self.latent_shape_),
            "resolution": self.resolution_,
        }

    def load_parts(self, folder: Path, manifest: dict[str, Any], base: str | Path | None) -> None:
        model = load_base_model(base or manifest["base"])
        conditioner = FmriConditioner.from_pretrained(folder / "conditioner", local_files_only=True)
        if conditioner.config.token_dim != model.token_dim:
            raise BaseModelError(
                f"{folder}: conditioner makes {conditioner.config.token_dim}-wide tokens but the base unet's "
                f"cross_attention_dim is {model.token_dim}; load it with the base model it was trained on"
            )
        unet = model.unet
        if self.adapter == "full":
            unet = type(unet).from_pretrained(folder / "unet", local_files_only=True)
        controlnet = None
        if self.uses_control:
            controlnet = ControlNetModel.from_pretrained(folder / "controlnet", local_files_only=True)
        saved = getattr(diffusers, manifest["scheduler"]).from_pretrained(
            folder / "scheduler", local_files_only=True
        )
        self.config = replace(
            self.config,
            condition=manifest["condition"],
            start=manifest.get("start", "ridge-latents"),
            decode=manifest.get("decode", "vae"),
        )
        if self.uses_pixel_ridge():
            self.pixel_ridge_ = self.load_ridge(folder / "pixel_ridge")
        if self.config.start == START_IR:
            self.first_stage_ = InverseRetinotopy.load(folder / START_IR, self._first_stage_settings())
        if self.config.condition == "contrastive":
            self.contrastive_ = ContrastiveEncoder.load(folder / "contrastive")
        self.pipeline_ = self.make_pipeline(
            unet=unet,
            scheduler=sampling_scheduler(self.config.sampler, saved),
            conditioner=conditioner,
            vae=model.vae,
            controlnet=controlnet,
            image_fit="resize",
        )
        if self.adapter == "lora":
            self.pipeline_.load_lora_weights(str(folder / "lora"))
        if self._compiles():
            self.pipeline_.unet.compile()
        self.ridge_ = self.load_ridge(folder / "ridge")
        self.base_source_ = model.source
        self.latent_shape_ = tuple(manifest["latent_shape"])
        self.resolution_ = manifest["resolution"]

    def _compiles(self) -> bool:
        """Whether the UNet goes through torch.compile: the recipe's choice or the run's --compile."""
        return self.config.finetune.compile or self.settings.compile

    # ------------------------------------------------------------- predicting
    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        """The conditioner's input (ridge's latents, the fMRI or its contrastive embedding), the img2img
        start below strength 1, sd-control's ridge image, and the residual decoding's."""
        config, n = self.config, len(fmri)
        latents = self.ridge_.predict(fmri).astype(np.float32)
        if config.condition == "contrastive":
            condition = self.contrastive_.embed_fmri(fmri)
        else:
            condition = latents if config.condition == "ridge" else np.asarray(fmri, dtype=np.float32)
        inputs = {"condition": torch.from_numpy(condition)}
        size = self.image_size_
        ridge_images = start_images = None
        if self.uses_pixel_ridge():
            ridge_images = np.clip(self.pixel_ridge_.predict(fmri), 0, 1).reshape(n, size, size)
            ridge_images = start_images = torch.from_numpy(ridge_images.astype(np.float32))
        if config.start == START_IR and config.strength < 1:
            start_images = torch.from_numpy(self.first_stage_.predict(fmri).astype(np.float32))
        if config.strength < 1 and config.start in ("ridge-pixels", START_IR):
            inputs["init_image"] = start_images
        elif config.strength < 1:
            inputs["init_latents"] = torch.from_numpy(latents).view(n, *self.latent_shape_)
        if self.uses_control:
            inputs["control_image"] = ridge_images
        if config.decode == "residual":
            inputs["residual_image"] = start_images
        return inputs


class SDDirect(StableDiffusionMethod):
    """The base model as it is, steered through the conditioner alone."""

    name = "sd-direct"
    adapter = "none"


class SDLora(StableDiffusionMethod):
    """LoRA on the UNet's cross-attention + the conditioner (the earlier project's fine-tune, evaluated)."""

    name = "sd-lora"
    adapter = "lora"


@dataclass(frozen=True)
class FullFinetuneConfig(StableConfig):
    """StableConfig with a learning rate for every UNet weight (a LoRA's 1e-3 would wreck the prior)."""

    finetune: FinetuneConfig = field(
        default_factory=lambda: FinetuneConfig(
            training=TrainingConfig(max_steps=600, batch_size=32, learning_rate=2e-4, warmup_steps=50)
        )
    )


class SDFull(StableDiffusionMethod):
    """The whole UNet fine-tuned with the conditioner."""

    name = "sd-full"
    adapter = "full"
    config_class = FullFinetuneConfig


class SDControl(StableDiffusionMethod):
    """A ControlNet fed the ridge reconstruction; UNet frozen, conditioner and ControlNet learn."""

    name = "sd-control"
    adapter = "none"
    uses_control = True


def _controlnet_for(base: BaseModel) -> ControlNetModel:
    """A ControlNet copied from the base UNet, its control-image encoder sized to the VAE's downsampling."""
    levels = len(base.vae.config.block_out_channels)
    widths = (16, 32, 96, 256, 256)[:levels]
    return ControlNetModel.from_unet(
        base.unet.float(),
        conditioning_channels=base.vae.config.in_channels,
        conditioning_embedding_out_channels=widths,
    )
