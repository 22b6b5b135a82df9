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

import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_diffusion.methods.conditional import posterior_rows, sample_generators, sampling_progress
from fmri_diffusion.models.conditioner import GivenTokens
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.priors.captions import CaptionEncoder
from fmri_diffusion.priors.loading import (
    BaseModelError,
    SmallBaseConfig,
    base_model_for,
    encode_latents,
    load_base_model,
    noisy_embedding_input,
)
from fmri_diffusion.schedulers import Sampler, sampling_scheduler
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune, prepare_unet
from fmri_diffusion.training.lora import save_lora
from fmri_encoders.contrastive import load_clip_image_encoder
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import loss_curves
from fmri_encoders.training.loop import TrainingConfig, training_for
from fmri_eval.atomic import atomic_output_dir

PriorAdapter = Literal["auto", "full", "lora", "none"]
ImageRoute = Literal["embedder", "clip"]
STAGES_FILE = "brain_diffuser.json"
SAVED_SAMPLING = ("strength", "num_inference_steps", "guidance_scale", "n_samples", "sampler")
DEFAULT_MIXING = 0.4
"""Text guidance weight where captions exist (the published run mixed 0.6 image with 0.4 text)."""


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


class BrainDiffuserStage1(ReconstructionMethod):
    """fMRI -> autoencoder latents (ridge) -> decoded image."""

    name = "brain-diffuser-stage1"

    def __init__(
        self, settings: MethodSettings | None = None, config: BrainDiffuserConfig | None = None
    ) -> None:
        super().__init__(settings)
        self.config = self.settings.configure(config or BrainDiffuserConfig())

    def fit(self, train: PairedDataset) -> BrainDiffuserStage1:
        self._fit_stage1(train)
        self._save_stages()
        return self

    def _fit_stage1(self, train: PairedDataset) -> None:
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
        self.latent_ridge_ = _ridge(train, self.latents_)
        self._build_pipeline(self.base_.unet)

    def _build_pipeline(self, unet: UNet2DConditionModel) -> None:
        self.pipeline_ = FmriImagePipeline(
            unet=unet,
            scheduler=sampling_scheduler(self.config.sampler, self.base_.scheduler),
            conditioner=self.base_.conditioner,
            vae=self.base_.vae,
            image_fit="resize",
        ).to(resolve_device(self.settings.device))
        self.pipeline_.set_progress_bar_config(**sampling_progress(self.settings, self.name))

    def stage1_latents(self, fmri: np.ndarray) -> torch.Tensor:
        return _predict(self.latent_ridge_, fmri, self.latent_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.latents_.shape[1:])

    @torch.no_grad()
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        latents = self.stage1_latents(fmri).to(self.pipeline_.device)
        return self.pipeline_.from_model_space(latents, self.image_size_).cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------ saved stages
    def _save_stages(self) -> None:
        if self.settings.work_dir is not None:
            with atomic_output_dir(self.settings.work_dir / self.name / "stages") as staging:
                self.save_stages(staging)

    def save_stages(self, folder: Path) -> None:
        """The fitted ridges (and adapted prior) plus a manifest naming the base model they belong to."""
        self.latent_ridge_.save(folder / "latent_ridge")
        manifest = {
            "method": self.name,
            "base": self.base_.source,
            "image_size": self.image_size_,
            "latent_shape": list(self.latent_shape),
            "sampling": {name: getattr(self.config, name) for name in SAVED_SAMPLING},
        }
        (folder / STAGES_FILE).write_text(json.dumps(manifest | self._manifest_extra(), indent=2))

    def _manifest_extra(self) -> dict[str, object]:
        return {}

    @classmethod
    def load_stages(
        cls, folder: str | Path, settings: MethodSettings | None = None, *, base: str | Path | None = None
    ) -> BrainDiffuserStage1:
        """A fitted method from a folder written by save_stages (the base model is read again)."""
        folder = Path(folder)
        if not (folder / STAGES_FILE).is_file():
            raise BaseModelError(f"{folder}: no {STAGES_FILE}; pass a folder written by a brain-diffuser run")
        manifest = json.loads((folder / STAGES_FILE).read_text())
        if manifest["method"] != cls.name:
            raise BaseModelError(f"{folder} holds {manifest['method']} stages; load them with that method")
        method = cls(settings)
        overrides = {k: v for k, v in method.settings.sampling.items() if k in SAVED_SAMPLING}
        method.config = replace(method.config, **(manifest["sampling"] | overrides))  # as run, unless told
        method.base_ = load_base_model(base or manifest["base"])
        method.image_size_ = manifest["image_size"]
        method.latents_ = torch.empty(0, *manifest["latent_shape"])
        method.latent_ridge_ = RidgeEncoder.load(folder / "latent_ridge")
        method._load_extra(folder, manifest)
        return method

    def _load_extra(self, folder: Path, manifest: dict[str, object]) -> None:
        self._build_pipeline(self.base_.unet)


class BrainDiffuser(BrainDiffuserStage1):
    """Stage 1, then img2img from its latents guided by image (and caption) tokens predicted from fMRI."""

    name = "brain-diffuser"

    def fit(self, train: PairedDataset) -> BrainDiffuser:
        self._fit_stage1(train)
        tokens, self.image_route_ = self._image_tokens(train)
        self.token_shape_ = tuple(tokens.shape[1:])
        self.token_ridge_ = _ridge(train, tokens)
        self.mixing_ = self._mixing(train)
        if self.mixing_ > 0:
            encoder = CaptionEncoder.from_folder(self.base_.folder, resolve_device(self.settings.device))
            if encoder.width != self.base_.token_dim:
                raise BaseModelError(
                    f"{self.base_.source}: text_encoder/ makes {encoder.width}-wide tokens but the UNet's "
                    f"cross_attention_dim is {self.base_.token_dim}; they must belong together"
                )
            text = encoder(list(train.captions))
            self.text_shape_ = tuple(text.shape[1:])
            self.text_null_ = encoder.encode([""])  # a Stable Diffusion's unconditional text input
            self.text_ridge_ = _ridge(train, text)
        self._adapt_prior(tokens)
        self._save_stages()
        return self

    def _image_tokens(self, train: PairedDataset) -> tuple[torch.Tensor, ImageRoute]:
        """Each training image's condition tokens, from the small base's embedder or a CLIP image encoder."""
        embedder = self.base_.conditioner
        if embedder is not None:
            with torch.no_grad():
                flat = self.latents_.flatten(1).to(embedder.device, embedder.dtype)
                return embedder.eval()(flat).float().cpu(), "embedder"
        folder = Path(self.base_.folder or self.base_.source) / "image_encoder"
        if not (folder / "config.json").is_file():
            raise BaseModelError(
                f"{self.base_.source}: brain-diffuser stage 2 needs an image embedder: conditioner/ (the "
                "small base model) or image_encoder/ (a diffusers image-variation model); or run "
                "brain-diffuser-stage1 alone"
            )
        encoder = load_clip_image_encoder(folder).to(resolve_device(self.settings.device))
        if encoder.embed_dim != self.base_.token_dim:
            raise BaseModelError(
                f"{folder}: CLIP embeddings of width {encoder.embed_dim} cannot guide a UNet whose "
                f"cross_attention_dim is {self.base_.token_dim}; they must belong together"
            )
        images = torch.from_numpy(train.images)
        with torch.no_grad():
            embeds = torch.cat([encoder(chunk.to(encoder.mean.device)).cpu() for chunk in images.split(64)])
        return embeds[:, None], "clip"

    def _mixing(self, train: PairedDataset) -> float:
        """Text guidance weight: as configured, or DEFAULT_MIXING where captions and a text encoder exist."""
        folder = self.base_.folder
        available = train.captions is not None and folder is not None and CaptionEncoder.available(folder)
        mixing = self.config.mixing
        if mixing is None:
            return DEFAULT_MIXING if available else 0.0
        if mixing > 0 and not available:
            raise BaseModelError(
                f"mixing {mixing} needs captions in the data (NSD with nsd_stim_info_merged.csv and COCO's "
                "caption files) and a base model with text_encoder/ and tokenizer/; use --mixing 0"
            )
        return mixing

    def _prior_adapter(self) -> Literal["full", "lora", "none"]:
        adapter = self.config.prior_adapter
        if adapter == "auto":
            return "lora" if self.settings.pretrained else "full"
        return adapter

    def _adapt_prior(self, tokens: torch.Tensor) -> None:
        """Fine-tune the UNet as an image-variation model of the training images (embedder frozen)."""
        self.adapter_ = self._prior_adapter()
        if self.adapter_ == "none":
            return
        config, settings = self.config, self.settings
        finetune_config = FinetuneConfig(
            adapter=self.adapter_,
            lora_rank=config.prior_lora_rank,
            lora_targets="all",
            condition_dropout=config.base.condition_dropout,
            training=training_for(config.prior_training, settings),
        )
        if self.image_route_ == "embedder":  # the embedder sees noised latents, as in pre-training
            conditioner = self.base_.conditioner.requires_grad_(False)
            condition = self.latents_.flatten(1)
            augment = partial(noisy_embedding_input, max_noise=config.base.condition_noise)
        else:
            conditioner, condition, augment = GivenTokens(*self.token_shape_), tokens.flatten(1), None
        unet = prepare_unet(self.pipeline_.unet, finetune_config)
        work_dir = None if settings.work_dir is None else settings.work_dir / self.name / "prior"
        self.prior_training_ = finetune(
            ConditionedUNet(unet, conditioner),
            {"clean": self.latents_, "condition": condition},
            self.base_.scheduler,
            finetune_config,
            out_dir=work_dir,
            resume="latest" if settings.resume and work_dir is not None else None,
            description=f"{self.name} prior",
            augment=augment,
        )
        self._build_pipeline(unet.eval())

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def artefacts(self) -> dict[str, Path]:
        return loss_curves(prior_loss_curve=getattr(self, "prior_training_", None))

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        config, n = self.config, len(fmri)
        guides = {"tokens": _predict(self.token_ridge_, fmri, self.token_shape_)}
        if self.mixing_ > 0:
            guides["text_tokens"] = _predict(self.text_ridge_, fmri, self.text_shape_)
            guides["negative_text_tokens"] = self.text_null_.expand(n, -1, -1)
        guides = {key: value.repeat(config.n_samples, 1, 1) for key, value in guides.items()}
        start = self.stage1_latents(fmri).repeat(config.n_samples, 1, 1, 1)
        generators = sample_generators(self.settings.seed, config.n_samples, n)
        chunks = []
        for first in range(0, len(start), config.sample_batch_size):
            part = slice(first, first + config.sample_batch_size)
            chunks.append(
                self.pipeline_(
                    **{key: value[part] for key, value in guides.items()},
                    mixing=self.mixing_,
                    image_size=self.image_size_,
                    num_inference_steps=config.num_inference_steps,
                    guidance_scale=config.guidance_scale,
                    init_latents=start[part],
                    strength=config.strength,
                    generator=generators[part],
                )
            )
        images = np.concatenate(chunks)
        samples = images.reshape(config.n_samples, n, self.image_size_, self.image_size_).astype(np.float32)
        return posterior_rows(self.name, samples)

    # ------------------------------------------------------------ saved stages
    def save_stages(self, folder: Path) -> None:
        super().save_stages(folder)
        self.token_ridge_.save(folder / "token_ridge")
        if self.mixing_ > 0:
            self.text_ridge_.save(folder / "text_ridge")
            save_file({"null": self.text_null_.contiguous()}, str(folder / "text_null.safetensors"))
        if self.adapter_ == "lora":
            save_lora(self.pipeline_.unet, folder / "prior_lora")
        elif self.adapter_ == "full":
            self.pipeline_.unet.save_pretrained(folder / "prior_unet")

    def _manifest_extra(self) -> dict[str, object]:
        extra = {
            "token_shape": list(self.token_shape_),
            "image_route": self.image_route_,
            "prior_adapter": self.adapter_,
            "mixing": self.mixing_,
        }
        if self.mixing_ > 0:
            extra["text_shape"] = list(self.text_shape_)
        return extra

    def _load_extra(self, folder: Path, manifest: dict[str, object]) -> None:
        self.token_shape_ = tuple(manifest["token_shape"])
        self.token_ridge_ = RidgeEncoder.load(folder / "token_ridge")
        self.image_route_ = manifest["image_route"]
        self.mixing_ = manifest["mixing"]
        if self.mixing_ > 0:
            self.text_shape_ = tuple(manifest["text_shape"])
            self.text_ridge_ = RidgeEncoder.load(folder / "text_ridge")
            self.text_null_ = load_file(str(folder / "text_null.safetensors"))["null"]
        self.adapter_ = manifest["prior_adapter"]
        unet = self.base_.unet
        if self.adapter_ == "full":
            unet = UNet2DConditionModel.from_pretrained(folder / "prior_unet", local_files_only=True)
        self._build_pipeline(unet.eval())
        if self.adapter_ == "lora":
            self.pipeline_.load_lora_weights(str(folder / "prior_lora"))


def _ridge(train: PairedDataset, targets: torch.Tensor) -> RidgeEncoder:
    """One ridge (alpha chosen by stimulus-grouped CV) from the training fMRI to flattened targets."""
    return RidgeEncoder(per_target=False).fit(
        train.fmri, targets.flatten(1).numpy(), groups=train.stimulus_id
    )


def _predict(ridge: RidgeEncoder, fmri: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(ridge.predict(fmri).astype(np.float32)).view(len(fmri), *shape)
