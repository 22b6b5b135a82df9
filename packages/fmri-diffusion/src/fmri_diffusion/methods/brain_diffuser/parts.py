"""Brain-Diffuser's fitted parts: stage 1's decodings (the base autoencoder's latents, or VDVAE's as
published) and stage 2's guides, each with its save/load.

Every ridge is fitted on training trials only (alpha chosen by stimulus-grouped CV).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch

from fmri_data.dataset import PairedDataset
from fmri_diffusion.models.vdvae import BRAIN_DIFFUSER_LAYERS, VDVAE
from fmri_diffusion.pipelines.pixels import from_pixels, to_pixels
from fmri_diffusion.priors.captions import CaptionEncoder
from fmri_diffusion.priors.loading import BaseModel, BaseModelError
from fmri_diffusion.priors.vdvae import load_vdvae
from fmri_encoders.contrastive import load_clip_image_encoder
from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import derived_seed, held_on, resolve_device

ImageRoute = Literal["embedder", "clip"]
RIDGE_TARGET_BATCH = 16_384
"""Targets of the CV solve at once (VDVAE's 91,168 latents, CLIP's 257 x 768 tokens)."""
DEFAULT_MIXING = 0.4
"""Text guidance weight where captions exist (the published run mixed 0.6 image with 0.4 text)."""


class LatentDecoding:
    """Stage 1: ridge from fMRI to the base autoencoder's latents, whose decoding is the coarse image."""

    def __init__(self, ridge: RidgeEncoder, latent_shape: tuple[int, ...]) -> None:
        self.ridge = ridge
        self.latent_shape = latent_shape

    @classmethod
    def fit(cls, train: PairedDataset, base: BaseModel, device: str) -> tuple[LatentDecoding, torch.Tensor]:
        """The fitted stage and the training images' latents (which stage 2 also learns from)."""
        latents = base.encode_images(train.images, device)
        return cls(fit_ridge(train, latents), tuple(latents.shape[1:])), latents

    def predict(self, fmri: np.ndarray) -> torch.Tensor:
        return predict_tokens(self.ridge, fmri, self.latent_shape)

    def start(self, fmri: np.ndarray, image_size: int) -> dict[str, torch.Tensor]:
        """Stage 2's img2img start: the predicted latents (at the model's size, whatever `image_size`)."""
        return {"init_latents": self.predict(fmri)}

    def save(self, folder: Path) -> dict[str, object]:
        self.ridge.save(folder / "latent_ridge")
        return {"latent_shape": list(self.latent_shape)}

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, object]) -> LatentDecoding:
        return cls(RidgeEncoder.load(folder / "latent_ridge"), tuple(manifest["latent_shape"]))


class VdvaeDecoding:
    """Stage 1 as published: ridge from fMRI to the posterior means of VDVAE's first `n_layers` latent
    layers, its predictions rescaled to the training latents' mean and std; decoding them (the deeper layers
    drawn from the prior at `temperature`) gives the coarse image. Each trial's draws come from its own
    generator seeded by (seed, trial), so its stage-1 image does not depend on batching. VDVAE waits on the
    CPU and computes on `device` only while it encodes or decodes: stage 2 samples with the GPU to itself."""

    def __init__(
        self,
        ridge: RidgeEncoder,
        vdvae: VDVAE,
        weights: str,
        n_layers: int,
        temperature: float,
        seed: int,
        device: str,
        colour: bool = False,
    ) -> None:
        self.ridge, self.vdvae, self.weights = ridge, vdvae, weights
        self.n_layers, self.temperature, self.seed = n_layers, temperature, seed
        self.device = resolve_device(device)
        self.colour = colour  # fitted on RGB stimuli: decodes to RGB

    @classmethod
    def fit(
        cls,
        train: PairedDataset,
        weights: str,
        n_layers: int | None,
        temperature: float,
        device: str,
        seed: int,
        batch_size: int = 32,
    ) -> VdvaeDecoding:
        """n_layers None: the published 31, or every layer of a VDVAE with fewer."""
        vdvae = load_vdvae(weights)
        n_layers = n_layers or min(BRAIN_DIFFUSER_LAYERS, len(vdvae.decoder.dec_blocks))
        pixels = to_pixels(
            torch.from_numpy(train.images),
            vdvae.config.image_size,
            channels=vdvae.config.image_channels,
            fit="resize",
        )
        with held_on(vdvae, resolve_device(device)):
            latents = torch.cat(
                [
                    vdvae.encode_latents((chunk + 1) / 2, n_layers).float().cpu()
                    for chunk in pixels.split(batch_size)
                ]
            )
        ridge = fit_ridge(train, latents, rescale=True)
        return cls(ridge, vdvae, weights, n_layers, temperature, seed, device, train.is_colour)

    def images(self, fmri: np.ndarray, image_size: int, batch_size: int = 32) -> torch.Tensor:
        """[n, image_size, image_size] in [0, 1] (fitted on colour stimuli: VDVAE's RGB, [..., 3]): the
        decoded predicted latents."""
        latents = torch.from_numpy(self.ridge.predict(fmri).astype(np.float32))
        generators = [
            torch.Generator(self.device).manual_seed(derived_seed(self.seed, trial))
            for trial in range(len(fmri))
        ]
        with held_on(self.vdvae, self.device):
            decoded = [
                self.vdvae.decode_latents(
                    latents[start : start + batch_size],
                    self.n_layers,
                    temperature=self.temperature,
                    generator=generators[start : start + batch_size],
                )
                .float()
                .cpu()
                for start in range(0, len(latents), batch_size)
            ]
        return from_pixels(torch.cat(decoded) * 2 - 1, image_size, fit="resize", colour=self.colour)

    def start(self, fmri: np.ndarray, image_size: int) -> dict[str, torch.Tensor]:
        """Stage 2's img2img start: the decoded image, which the stage-2 model encodes itself."""
        return {"init_image": self.images(fmri, image_size)}

    def save(self, folder: Path) -> dict[str, object]:
        self.ridge.save(folder / "vdvae_ridge")
        return {
            "vdvae": self.weights,
            "vdvae_layers": self.n_layers,
            "vdvae_temperature": self.temperature,
            "vdvae_seed": self.seed,
            "vdvae_colour": self.colour,
        }

    @classmethod
    def load(
        cls,
        folder: Path,
        manifest: dict[str, object],
        device: str,
        *,
        weights: str | None = None,
        temperature: float | None = None,
    ) -> VdvaeDecoding:
        """As saved; `weights` and `temperature` replace the saved ones (moved weights, a new temperature)."""
        weights = weights or manifest["vdvae"]
        return cls(
            RidgeEncoder.load(folder / "vdvae_ridge"),
            load_vdvae(weights),
            weights,
            manifest["vdvae_layers"],
            manifest["vdvae_temperature"] if temperature is None else temperature,
            manifest["vdvae_seed"],
            device,
            manifest.get("vdvae_colour", False),  # stages saved before colour were grayscale
        )


class CaptionGuide(NamedTuple):
    """Ridge from fMRI to caption tokens, their shape, and the empty caption's tokens (the null guide)."""

    ridge: RidgeEncoder
    shape: tuple[int, ...]
    null: torch.Tensor


class GuideRidges:
    """Stage 2's guides from fMRI: ridge to the image tokens (the base's embedder or a CLIP image encoder)
    and, where captions and a text encoder exist, to the caption tokens, mixed in by `mixing`."""

    def __init__(
        self,
        token_ridge: RidgeEncoder,
        token_shape: tuple[int, ...],
        image_route: ImageRoute,
        mixing: float = 0.0,
        text: CaptionGuide | None = None,
    ) -> None:
        self.token_ridge, self.token_shape, self.image_route = token_ridge, token_shape, image_route
        self.mixing = mixing
        self.text = text  # when mixing > 0

    @classmethod
    def fit(
        cls, train: PairedDataset, base: BaseModel, latents: torch.Tensor, mixing: float | None, device: str
    ) -> tuple[GuideRidges, torch.Tensor]:
        """The fitted guides and the training images' own tokens (the prior adapts to those)."""
        tokens, route = _image_tokens(train, base, latents, device)
        mixing = _mixing(train, base, mixing)
        text = None
        if mixing > 0:
            encoder = CaptionEncoder.from_folder(base.folder, resolve_device(device))
            if encoder.width != base.token_dim:
                raise BaseModelError(
                    f"{base.source}: text_encoder/ makes {encoder.width}-wide tokens but the UNet's "
                    f"cross_attention_dim is {base.token_dim}; they must belong together"
                )
            captions = encoder(list(train.captions))
            # a Stable Diffusion's unconditional text input is the empty caption's tokens
            ridge = fit_ridge(train, captions)
            text = CaptionGuide(ridge, tuple(captions.shape[1:]), encoder.encode([""]))
        return cls(fit_ridge(train, tokens), tuple(tokens.shape[1:]), route, mixing, text), tokens

    def predict(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        """The pipeline's guide inputs for `fmri`, [n, K, D] each."""
        guides = {"tokens": predict_tokens(self.token_ridge, fmri, self.token_shape)}
        if self.text is not None:
            guides["text_tokens"] = predict_tokens(self.text.ridge, fmri, self.text.shape)
            guides["negative_text_tokens"] = self.text.null.expand(len(fmri), -1, -1)
        return guides

    def save(self, folder: Path) -> dict[str, object]:
        self.token_ridge.save(folder / "token_ridge")
        manifest = {
            "token_shape": list(self.token_shape),
            "image_route": self.image_route,
            "mixing": self.mixing,
        }
        if self.text is not None:
            self.text.ridge.save(folder / "text_ridge")
            shape = {"shape": list(self.text.shape)}
            save_settings_and_tensors(folder, "text_guide", shape, {"null": self.text.null})
        return manifest

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, object]) -> GuideRidges:
        text = None
        if manifest["mixing"] > 0:
            shape, tensors = load_settings_and_tensors(folder, "text_guide")
            ridge = RidgeEncoder.load(folder / "text_ridge")
            text = CaptionGuide(ridge, tuple(shape["shape"]), tensors["null"])
        token_ridge = RidgeEncoder.load(folder / "token_ridge")
        return cls(
            token_ridge, tuple(manifest["token_shape"]), manifest["image_route"], manifest["mixing"], text
        )


def _image_tokens(
    train: PairedDataset, base: BaseModel, latents: torch.Tensor, device: str
) -> tuple[torch.Tensor, ImageRoute]:
    """Each training image's condition tokens, from the small base's embedder or a CLIP image encoder."""
    embedder = base.conditioner
    if embedder is not None:
        with torch.no_grad():
            flat = latents.flatten(1).to(embedder.device, embedder.dtype)
            return embedder.eval()(flat).float().cpu(), "embedder"
    folder = Path(base.folder or base.source) / "image_encoder"
    if not (folder / "config.json").is_file():
        raise _no_image_embedder(base.source)
    encoder = load_clip_image_encoder(folder).to(resolve_device(device))
    if encoder.embed_dim != base.token_dim:
        raise _width_mismatch(folder, encoder.embed_dim, base.token_dim)
    images = torch.from_numpy(train.images)
    with torch.no_grad():
        embeds = torch.cat([encoder(chunk.to(encoder.mean.device)).cpu() for chunk in images.split(64)])
    return embeds[:, None], "clip"


def check_image_embedder(model_folder: Path) -> None:
    """The image-variation route's embedder, read from the model folder's config files before any fold
    trains: a conditioner/, or an image_encoder/ whose CLIP embeddings are as wide as the UNet's
    cross-attention (what _image_tokens needs once stage 1 has been fitted; transformers' CLIP vision
    config has projection_dim 512 unless it says otherwise)."""
    if (model_folder / "conditioner" / "config.json").is_file():
        return
    encoder = model_folder / "image_encoder"
    if not (encoder / "config.json").is_file():
        raise _no_image_embedder(str(model_folder))
    width = json.loads((encoder / "config.json").read_text(encoding="utf-8")).get("projection_dim", 512)
    unet_config = model_folder / "unet" / "config.json"
    if not unet_config.is_file():
        raise BaseModelError(f"{model_folder}: no unet/config.json; pass a complete diffusers model folder")
    token_dim = json.loads(unet_config.read_text(encoding="utf-8")).get("cross_attention_dim")
    if width != token_dim:
        raise _width_mismatch(encoder, width, token_dim)


def _no_image_embedder(source: str) -> BaseModelError:
    return BaseModelError(
        f"{source}: brain-diffuser stage 2 needs an image embedder: conditioner/ (the small base model) or "
        "image_encoder/ (a diffusers image-variation model); or run brain-diffuser-stage1 alone"
    )


def _width_mismatch(encoder: Path, width: object, token_dim: object) -> BaseModelError:
    return BaseModelError(
        f"{encoder}: CLIP embeddings of width {width} cannot guide a UNet whose cross_attention_dim is "
        f"{token_dim}; they must belong together"
    )


def _mixing(train: PairedDataset, base: BaseModel, mixing: float | None) -> float:
    folder = base.folder
    available = train.captions is not None and folder is not None and CaptionEncoder.available(folder)
    return resolve_mixing(mixing, available)


def resolve_mixing(mixing: float | None, available: bool, fix: str = "use --mixing 0") -> float:
    """Text guidance weight: as configured, or DEFAULT_MIXING where captions and a text encoder exist;
    `fix` says what to change where they do not."""
    if mixing is None:
        return DEFAULT_MIXING if available else 0.0
    if mixing > 0 and not available:
        raise BaseModelError(
            f"mixing {mixing} needs captions in the data (NSD with nsd_stim_info_merged.csv and COCO's "
            f"caption files) and a base model with text_encoder/ and tokenizer/; {fix}"
        )
    return mixing


def fit_ridge(train: PairedDataset, targets: torch.Tensor, *, rescale: bool = False) -> RidgeEncoder:
    """One ridge (alpha chosen by stimulus-grouped CV) from the training fMRI to flattened targets, on the
    CPU (the GPU keeps its memory for the diffusion models; CLIP's 257 x 768 tokens alone take 7 GB at NSD
    scale), its CV solved RIDGE_TARGET_BATCH targets at a time. rescale: map predictions to the training
    targets' mean and std, as the published Brain-Diffuser does (ridge shrinks them towards the mean:
    grey VDVAE images, weak CLIP guidance), by the spread of out-of-fold predictions (see RidgeEncoder)."""
    flat = targets.flatten(1).numpy()
    batch = RIDGE_TARGET_BATCH if flat.shape[1] > RIDGE_TARGET_BATCH else None
    ridge = RidgeEncoder(per_target=False, rescale=rescale, n_targets_batch=batch)
    return ridge.fit(train.fmri, flat, groups=train.stimulus_id)


def predict_tokens(ridge: RidgeEncoder, fmri: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(ridge.predict(fmri).astype(np.float32)).view(len(fmri), *shape)
