"""Brain-Diffuser (Ozcelik & VanRullen 2023): two stages on one base model, every stage saved and reusable.

- `brain-diffuser-stage1`: ridge from fMRI to latents whose decoding gives a coarse image: `stage1="vdvae"`
  the published VDVAE's first 31 latent layers (its weights from a local file), or `"autoencoder"` the
  base model's AutoencoderKL latents (the small base model's, or a user's with --pretrained).
- `brain-diffuser`: ridge from fMRI to the conditioning model's image tokens (the original: CLIP vision,
  and CLIP text where captions exist), then image-to-image diffusion from the stage-1 latents at
  `strength` (0.75 with 50 DDIM steps, as published) guided by the predicted tokens. `stage2` picks the
  model: "versatile", the published Versatile Diffusion (a local folder given with --pretrained; 257
  CLIP-vision and 77 CLIP-text tokens, mixed inside its dual-guided UNet, guidance 7.5); "image-variation",
  the CLIP `image_encoder/` of a diffusers image-variation model given with --pretrained (one token, its
  projected image embedding); "small", the small base model's `conditioner/` (an embedder of latents).
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
from fmri_data.errors import DataError
from fmri_diffusion.methods.base import DiffusionMethod, colour_likelihood_error
from fmri_diffusion.methods.brain_diffuser.memo import STAGE1_MEMO
from fmri_diffusion.methods.brain_diffuser.parts import (
    GuideRidges,
    LatentDecoding,
    VdvaeDecoding,
    check_image_embedder,
    resolve_mixing,
)
from fmri_diffusion.methods.brain_diffuser.prior import adapt_prior
from fmri_diffusion.methods.brain_diffuser.versatile import GUIDANCE_SCALE, VersatileGuides
from fmri_diffusion.priors import base_model_for
from fmri_diffusion.priors.captions import CaptionEncoder
from fmri_diffusion.priors.loading import (
    BaseModel,
    BaseModelError,
    base_model_folder,
    is_versatile_folder,
    load_base_model,
)
from fmri_diffusion.priors.small import SmallBaseConfig
from fmri_diffusion.priors.vdvae import vdvae_latent_layers
from fmri_diffusion.priors.versatile import check_versatile_folder, load_versatile, set_text_weight
from fmri_diffusion.schedulers import Sampler, sampling_scheduler
from fmri_diffusion.training.denoising import FinetuneConfig
from fmri_diffusion.training.lora import save_lora
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import TrainingConfig, TrainingResult

PriorAdapter = Literal["auto", "full", "lora", "none"]
Stage1 = Literal["autoencoder", "vdvae"]
Stage2 = Literal["auto", "small", "image-variation", "versatile"]


@dataclass(frozen=True)
class BrainDiffuserConfig:
    """The two stages' models, stage-2 sampling and the prior's adaptation to the training images.

    stage1: "autoencoder" (the base model's latents) or "vdvae" (the published VDVAE from `vdvae`, a
    checkpoint file or converted folder; default `<pretrained>/vdvae`), predicting its first `vdvae_layers`
    latent layers (None: 31 as published, or all of a smaller VDVAE) and drawing the rest at
    `vdvae_temperature` (None: 1 as published, or as saved). stage2: "auto" takes "versatile" for a
    Versatile Diffusion folder given as the pretrained model, "image-variation" for another pretrained
    model, "small" without one. strength and steps are the published ones; guidance_scale None is the
    route's own (7.5 for versatile, as published; 1, no classifier-free guidance, for the others). mixing:
    weight of caption guidance (None: DEFAULT_MIXING where captions and a text encoder exist, else 0).
    sample_weight: temper of the encoding model's likelihood weighing stage 2's samples (methods.base);
    encoding_noise: that likelihood's (and guidance's) voxel noise, "independent" or "correlated"
    (fmri_encoders.noise).
    """

    base: SmallBaseConfig = field(default_factory=SmallBaseConfig)
    stage1: Stage1 = "autoencoder"
    stage2: Stage2 = "auto"
    vdvae: str | None = None
    vdvae_layers: int | None = None
    vdvae_temperature: float | None = None
    strength: float = 0.75
    num_inference_steps: int = 50
    guidance_scale: float | None = None
    sampler: Sampler = "ddim"
    n_samples: int = 8
    sample_batch_size: int = 64
    mixing: float | None = None
    likelihood_weight: float = 0.0
    sample_weight: float = 0.0
    encoding_voxels: int = 500
    encoding_model: str = "auto"
    encoding_noise: str = "independent"
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
    """What both Brain-Diffuser methods share: the stage-2 model, stage 1, the pipeline and the saved stages
    (`work_dir/<name>/stages`, or the final fit's folder: DiffusionMethod.stage_dir; the fitted parts, and a
    manifest naming the models they belong to)."""

    config_class = BrainDiffuserConfig
    colour = True  # on the published models only: see check_colour
    curves: ClassVar[dict[str, str]] = {}
    saved_as: ClassVar[str] = "stages"
    needs_stage2_model: ClassVar[bool] = True

    def check_stimuli(self, stimuli: PairedDataset) -> None:
        """The stage-2 route and stage 1's VDVAE weights, refused before any fold trains (the runner asks
        first) rather than when a fit reaches them: stage 1 alone regresses onto ~91k VDVAE latents on NSD."""
        super().check_stimuli(stimuli)
        self.route_ = self._route()  # what the adapter's check reads (the fit sets it again)
        if self.config.stage1 == "vdvae":
            self._check_vdvae_layers(self._vdvae_weights())
        if self.route_ == "versatile" and (self.needs_stage2_model or self.config.stage1 == "autoencoder"):
            check_versatile_folder(self.pretrained_)

    def _fit_stage1(self, train: PairedDataset) -> None:
        """Stage 1 (the route chosen first: `_route`), and the stage-2 model with a pipeline on its UNet
        where this method or stage 1 uses it; stage 1 is the other row's where both rows run (memo.py)."""
        config, settings = self.config, self.settings
        if self.needs_stage2_model or config.stage1 == "autoencoder":
            self._load_stage2_model(self.pretrained_)
        if config.stage1 == "vdvae":
            temperature = 1.0 if config.vdvae_temperature is None else config.vdvae_temperature
            weights = self._vdvae_weights()
            key = ("vdvae", weights, config.vdvae_layers, temperature, settings.device, settings.seed)
            self.stage1_ = STAGE1_MEMO.fitted(
                train,
                key,
                lambda: VdvaeDecoding.fit(
                    train, weights, config.vdvae_layers, temperature, settings.device, settings.seed
                ),
            )
        elif self.base_.folder is None:  # a base kept nowhere: the other row's is another model
            self.stage1_, self.train_latents_ = LatentDecoding.fit(train, self.base_, settings.device)
        else:
            key = ("autoencoder", self.base_.folder.resolve(), settings.device)
            self.stage1_, self.train_latents_ = STAGE1_MEMO.fitted(
                train, key, lambda: LatentDecoding.fit(train, self.base_, settings.device)
            )

    def check_colour(self) -> None:
        """RGB stimuli need RGB models on every stage this method runs: VDVAE, then Versatile Diffusion (the
        small base and the other routes work in grayscale); and no encoding model, which reads grayscale."""
        if self.config.stage1 != "vdvae" or (self.needs_stage2_model and self._route() != "versatile"):
            raise DataError(
                f"{self.name} reconstructs colour as published only: --stage1 vdvae"
                + (" --stage2 versatile (with its --pretrained folder)" if self.needs_stage2_model else "")
                + "; load the data in grayscale (leave out --colour) for the other routes"
            )
        names = ("likelihood_weight", "sample_weight")
        weights = [getattr(self.config, name) for name in names]
        weights += [value for name in names for value in self.settings.choices.get(name, ())]  # probes' too
        if self.needs_stage2_model and any(float(weight) > 0 for weight in weights):
            raise colour_likelihood_error(self.name)

    def _route(self) -> Literal["small", "image-variation", "versatile"]:
        pretrained, stage2 = self.settings.pretrained, self.config.stage2
        if stage2 != "auto" and (stage2 == "small") == bool(pretrained):
            need = "no --pretrained model" if stage2 == "small" else "a --pretrained model folder"
            raise DataError(f"brain-diffuser --stage2 {stage2} needs {need}")
        if pretrained and not Path(pretrained).exists():  # a Hugging Face id: its cached snapshot's folder
            pretrained = str(base_model_folder(pretrained, allow_download=self.settings.allow_download))
        self.pretrained_ = pretrained
        versatile = bool(pretrained) and is_versatile_folder(pretrained)
        if stage2 == "auto":
            return "versatile" if versatile else "image-variation" if pretrained else "small"
        if stage2 == "versatile" and not versatile:
            raise DataError(
                f"--stage2 versatile: {pretrained} is not a Versatile Diffusion folder (no image_unet/); "
                "pass a local copy of shi-labs/versatile-diffusion as --pretrained"
            )
        return stage2

    def _load_stage2_model(self, source: str | Path | None) -> None:
        """The base model (and for Versatile Diffusion its encoders), with a pipeline on its UNet."""
        if self.route_ == "versatile":  # in the run's half precision if it has one: it only samples
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.settings.mixed_precision or "")
            device = resolve_device(self.settings.device)
            self.versatile_ = load_versatile(source, device=device, torch_dtype=dtype)
            self.base_ = self.versatile_.base
        else:
            self.base_ = base_model_for(self.settings, self.config.base, self.image_size_)
        self._build_pipeline(self.base_.unet)

    def _check_vdvae_layers(self, weights: str) -> None:
        """The latent layers stage 1 predicts, set or offered, within the VDVAE's own (else refused when
        stage 1 encodes the training images)."""
        layers, available = self.largest_offered("vdvae_layers"), vdvae_latent_layers(weights)
        if layers > available:
            fix = self.refusal_fix(
                "vdvae_layers",
                f"drop the values above {available} from --choose vdvae_layers",
                f"use --vdvae-layers {available} or fewer",
            )
            raise DataError(
                f"{self.name}: vdvae_layers {layers:g}, but the VDVAE at {weights} has {available} latent "
                f"layers; {fix}"
            )

    def _vdvae_weights(self) -> str:
        weights = self.config.vdvae
        if weights is None and self.pretrained_:
            inside = Path(self.pretrained_) / "vdvae"
            weights = str(inside) if inside.exists() else None
        if weights is None:
            raise DataError(
                "--stage1 vdvae needs the VDVAE weights: --vdvae FILE_OR_FOLDER (the published "
                "imagenet64-iter-1600000-model-ema.th, or its converted folder), or a vdvae/ folder inside "
                "--pretrained"
            )
        return str(Path(weights).expanduser().resolve())

    def _build_pipeline(self, unet: UNet2DConditionModel) -> None:
        self.pipeline_ = self.make_pipeline(
            unet=unet,
            scheduler=sampling_scheduler(self.config.sampler, self.base_.scheduler),
            conditioner=self.base_.conditioner,
            vae=self.base_.vae,
            image_fit="smooth" if self.route_ == "versatile" else "resize",  # bicubic, as published
            colour=self.colour_,
        )

    def stage1_images(self, fmri: np.ndarray) -> np.ndarray:
        """[n, H, W] (colour: [n, H, W, 3]) in [0, 1]: stage 1's decoded predictions."""
        if isinstance(self.stage1_, VdvaeDecoding):
            images = self.stage1_.images(fmri, self.image_size_)
        else:
            latents = self.stage1_.predict(fmri).to(self.pipeline_.device)
            with torch.no_grad():
                images = self.pipeline_.from_model_space(latents, self.image_size_)
        return images.cpu().numpy().astype(np.float32)

    def sampling_options(self) -> dict[str, Any]:
        guidance = self.config.guidance_scale
        default = GUIDANCE_SCALE if self.route_ == "versatile" else 1.0
        return {"guidance_scale": default if guidance is None else guidance}

    # ------------------------------------------------------------ saved stages
    def save_parts(self, folder: Path) -> dict[str, Any]:
        """Stage 1 (and stage 2's parts) plus the models they belong to, which are read again on load."""
        parts = {"stage1": self.config.stage1, "stage2": self.route_, **self.stage1_.save(folder)}
        if hasattr(self, "base_"):
            parts["base"] = self.base_.source
        return {**parts, **self._save_stage2(folder)}

    def _save_stage2(self, folder: Path) -> dict[str, Any]:
        return {}

    def load_parts(self, folder: Path, manifest: dict[str, Any], base: str | Path | None) -> None:
        # stages saved before the routes had names: a CLIP image guide meant an image-variation model
        old_route = "image-variation" if manifest.get("image_route") == "clip" else "small"
        self.route_ = manifest.get("stage2", old_route)
        if "base" in manifest:
            self._load_base(base or manifest["base"])
        if manifest.get("stage1", "autoencoder") == "vdvae":
            weights = self.config.vdvae and str(Path(self.config.vdvae).expanduser().resolve())
            temperature = self.config.vdvae_temperature
            self.stage1_ = VdvaeDecoding.load(
                folder, manifest, self.settings.device, weights=weights, temperature=temperature
            )
        else:
            self.stage1_ = LatentDecoding.load(folder, manifest)
        self._load_stage2(folder, manifest)

    def _load_base(self, source: str | Path) -> None:
        if self.route_ == "versatile":
            self._load_stage2_model(source)
        else:
            self.base_: BaseModel = load_base_model(source)
            self._build_pipeline(self.base_.unet)

    def _load_stage2(self, folder: Path, manifest: dict[str, Any]) -> None:
        pass


class BrainDiffuserStage1(BrainDiffuserMethod):
    """fMRI -> latents (ridge) -> decoded image; one row (the VDVAE route's decoding draws are seeded)."""

    name = "brain-diffuser-stage1"
    samples_with_pipeline = False
    needs_stage2_model = False

    def fit_parts(self, train: PairedDataset) -> None:
        self.route_ = self._route()
        if self.colour_:
            self.check_colour()
        self._fit_stage1(train)

    def named_rows(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: self.stage1_images(fmri)}

    def steers(self) -> bool:
        """Never: stage 1 is one decoding, with no samples for a likelihood to guide or weigh."""
        return False

    def importance_temper(self) -> float:
        """0 under any `sample_weight`: stage 1 draws no samples to weigh."""
        return 0.0

    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        return self.stage1_.start(fmri, self.image_size_)


class BrainDiffuser(BrainDiffuserMethod):
    """Stage 1, then img2img from its output guided by image (and caption) tokens predicted from fMRI."""

    name = "brain-diffuser"
    curves: ClassVar[dict[str, str]] = {"prior_loss_curve": "prior_training_"}
    samples_pretrained: ClassVar[bool] = True

    def check_stimuli(self, stimuli: PairedDataset) -> None:
        """Its route's and stage 1's checks, the prior adapter the route can take, and captions (with a
        text encoder) for a caption guide set or offered to validation (`mixing` above 0)."""
        super().check_stimuli(stimuli)
        self._prior_adapter()
        if self.route_ == "image-variation":
            check_image_embedder(Path(self.pretrained_))
        mixing = self.largest_offered("mixing")
        text_encoder = self.route_ == "versatile" or (
            bool(self.pretrained_) and CaptionEncoder.available(self.pretrained_)
        )
        fix = self.refusal_fix("mixing", "drop the values above 0 from --choose mixing", "use --mixing 0")
        resolve_mixing(mixing, stimuli.captions is not None and text_encoder, fix)

    def fit_parts(self, train: PairedDataset) -> None:
        self.route_ = self._route()
        if self.colour_:
            self.check_colour()
        self.adapter_ = self._prior_adapter()
        self._fit_stage1(train)
        if self.route_ == "versatile":
            self.guides_ = VersatileGuides.fit(train, self.versatile_, self.config.mixing)
            return
        latents = getattr(self, "train_latents_", None)
        if latents is None:  # stage 1 was VDVAE: the small embedder and the prior still need base latents
            latents = self.base_.encode_images(train.images, self.settings.device)
        self.guides_, tokens = GuideRidges.fit(
            train, self.base_, latents, self.config.mixing, self.settings.device
        )
        if self.adapter_ != "none":
            unet, self.prior_training_ = self._adapt_prior(latents, tokens)
            self._build_pipeline(unet.eval())

    def _prior_adapter(self) -> Literal["full", "lora", "none"]:
        adapter = self.config.prior_adapter
        if self.route_ == "versatile":
            if adapter not in ("auto", "none"):
                raise DataError(
                    f"--prior-adapter {adapter}: the Versatile Diffusion route samples from the published "
                    "prior as it is; use --prior-adapter none (or leave it out)"
                )
            return "none"
        if adapter == "auto":
            return "lora" if self.settings.pretrained else "full"
        return adapter

    def _text_weight(self) -> float:
        """The caption guide's weight: as fitted, or as `--mixing` sets it (on reload, or per grid point of a
        validation choice)."""
        mixing = self.config.mixing
        if mixing and self._caption_guide() is None:
            raise BaseModelError(
                "these stages hold no caption guide (fitted without captions); use --mixing 0"
            )
        return self.guides_.mixing if mixing is None else mixing

    def _caption_guide(self) -> object:
        return self.guides_.text_ridge if self.route_ == "versatile" else self.guides_.text

    def draw(self, inputs: dict[str, torch.Tensor], generators: list[torch.Generator]) -> np.ndarray:
        if self.route_ == "versatile":  # the dual-guided UNet mixes the guides inside its attention
            set_text_weight(self.pipeline_.unet, self._text_weight())
        return super().draw(inputs, generators)

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
        return {**self.guides_.predict(fmri), **self.stage1_.start(fmri, self.image_size_)}

    def sampling_options(self) -> dict[str, Any]:
        """Caption mixing in the noise prediction (the Versatile route mixes inside its UNet: see draw)."""
        options = super().sampling_options()
        return options if self.route_ == "versatile" else {**options, "mixing": self._text_weight()}

    # ------------------------------------------------------------ saved stages
    def _save_stage2(self, folder: Path) -> dict[str, Any]:
        if self.adapter_ == "lora":
            save_lora(self.pipeline_.unet, folder / "prior_lora")
        elif self.adapter_ == "full":
            self.pipeline_.unet.save_pretrained(folder / "prior_unet")
        return {**self.guides_.save(folder), "prior_adapter": self.adapter_}

    def _load_stage2(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.adapter_ = manifest["prior_adapter"]
        guides = VersatileGuides if self.route_ == "versatile" else GuideRidges
        self.guides_ = guides.load(folder, manifest)
        self._text_weight()  # refuses --mixing > 0 for stages fitted without captions, on loading
        if self.route_ == "versatile":
            return
        if self.adapter_ == "full":
            unet = UNet2DConditionModel.from_pretrained(folder / "prior_unet", local_files_only=True)
            self._build_pipeline(unet.eval())
        if self.adapter_ == "lora":
            self.pipeline_.load_lora_weights(str(folder / "prior_lora"))
