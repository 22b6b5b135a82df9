"""Loading a base model (a prior): a diffusers Stable Diffusion folder, or an id in the offline cache.

A base model is the same diffusers classes (UNet2DConditionModel + AutoencoderKL + a DDPMScheduler, and
optionally an image embedder in `conditioner/`) in the same folder layout (`unet/`, `vae/`, `scheduler/`),
whether it is a user's Stable Diffusion or the small one pre-trained here (fmri_diffusion.priors.small), so
the small model exercises the code path a real Stable Diffusion takes. Loading never trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from fmri_data.errors import DataError
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.latents import encode_latents
from fmri_diffusion.pipelines.pixels import to_pixels

SUBFOLDERS = ("unet", "vae", "scheduler")


class BaseModelError(DataError):
    """A pretrained folder that cannot serve as a base model; the message names what is missing."""


@dataclass
class BaseModel:
    """The frozen starting point of a fine-tune."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler: DDPMScheduler
    source: str
    conditioner: FmriConditioner | None = None
    folder: Path | None = None  # where the parts live on disk (a Hugging Face cache snapshot for an id)

    @property
    def token_dim(self) -> int:
        return self.unet.config.cross_attention_dim

    @property
    def resolution(self) -> int:
        """The pixel size the model generates at (latent size x the VAE's downsampling)."""
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_images(self, images: np.ndarray, device: str) -> torch.Tensor:
        """Stimuli [n, H, W] in [0, 1] as the latents this model's UNet denoises (resized to its
        resolution, repeated to its VAE's channels), float32 on the CPU."""
        pixels = to_pixels(
            torch.from_numpy(images), self.resolution, channels=self.vae.config.in_channels, fit="resize"
        )
        return encode_latents(self.vae, pixels, device=device)

    def save(self, folder: Path) -> None:
        for name in SUBFOLDERS:
            getattr(self, name).save_pretrained(folder / name)
        if self.conditioner is not None:
            self.conditioner.save_pretrained(folder / "conditioner")


def is_versatile_folder(folder: str | Path) -> bool:
    """Whether `folder` is laid out as Versatile Diffusion (image_unet/ + text_unet/, not unet/)."""
    return (Path(folder) / "image_unet" / "config.json").is_file()


def base_model_folder(name_or_path: str | Path, *, allow_download: bool = False) -> Path:
    """The local folder of a base model (a path, or a Hugging Face id resolved in the cache), checked to
    hold unet/, vae/ and scheduler/ (or to be a Versatile Diffusion folder, which brain-diffuser's stage 2
    reads): apps call it before any work, so a wrong --pretrained fails at once."""
    folder = Path(name_or_path).expanduser()
    if not folder.exists():
        folder = _cached_snapshot(str(name_or_path), allow_download)
    if is_versatile_folder(folder):
        return folder
    missing = [name for name in SUBFOLDERS if not (folder / name / _config_name(name)).is_file()]
    if missing:
        raise BaseModelError(
            f"{folder}: no {', '.join(f'{m}/' for m in missing)} with a config; pass a diffusers Stable "
            "Diffusion folder (unet/, vae/, scheduler/), e.g. one written by save_pretrained"
        )
    return folder


def refuse_versatile(name_or_path: str | Path, *, allow_download: bool = False) -> Path:
    """The base model's folder (base_model_folder), refused if it is Versatile Diffusion's: methods check
    it before any fold trains, and load_base_model when it reads the folder."""
    folder = base_model_folder(name_or_path, allow_download=allow_download)
    if is_versatile_folder(folder):
        raise BaseModelError(
            f"{name_or_path} is a Versatile Diffusion folder, which only brain-diffuser's stage 2 reads "
            "(--stage2 versatile); the other methods need a Stable Diffusion folder (unet/, vae/, scheduler/)"
        )
    return folder


def load_base_model(
    name_or_path: str | Path, *, torch_dtype: torch.dtype | None = None, allow_download: bool = False
) -> BaseModel:
    """Read unet/, vae/ and scheduler/ of a diffusers Stable Diffusion folder (or a Hugging Face cache id).

    Offline by default: an id that is not in the cache is refused at once, with no network call; with
    `allow_download` its unet/, vae/, scheduler/ (and text and image encoders) are fetched first.
    """
    source = str(name_or_path)
    folder = refuse_versatile(source, allow_download=allow_download)
    try:
        unet = UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", torch_dtype=torch_dtype, local_files_only=True
        )
        vae = AutoencoderKL.from_pretrained(
            folder, subfolder="vae", torch_dtype=torch_dtype, local_files_only=True
        )
        scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    except OSError as error:
        raise BaseModelError(
            f"cannot load a base model from {source!r} ({' '.join(str(error).split())[:200]}); "
            "pass a complete diffusers folder"
        ) from error
    if not isinstance(unet.config.cross_attention_dim, int):
        raise BaseModelError(
            f"{source}: unet cross_attention_dim is {unet.config.cross_attention_dim!r}; one width for all "
            "blocks (Stable Diffusion 1.x/2.x style) is needed for the fMRI tokens"
        )
    if unet.config.in_channels != vae.config.latent_channels:
        raise BaseModelError(
            f"{source}: unet takes {unet.config.in_channels} channels but the vae makes "
            f"{vae.config.latent_channels} latent channels; unet/ and vae/ must belong together"
        )
    conditioner = None
    if (folder / "conditioner" / "config.json").is_file():
        conditioner = FmriConditioner.from_pretrained(folder / "conditioner", local_files_only=True).eval()
    return BaseModel(
        unet=unet.eval(),
        vae=vae.eval(),
        scheduler=scheduler,
        source=source,
        conditioner=conditioner,
        folder=folder,
    )


_DOWNLOADED = ["model_index.json", *(f"{name}/*" for name in (*SUBFOLDERS, "text_encoder", "tokenizer"))]
_DOWNLOADED += ["image_encoder/*", "feature_extractor/*"]
_NOT_NEEDED = [
    "*.msgpack",
    "*.onnx",
    "*.ckpt",
    "*.h5",
    "*non_ema*",
]  # other frameworks' copies, EMA-less weights


def _cached_snapshot(repo_id: str, allow_download: bool) -> Path:
    """The Hugging Face cache's snapshot folder of `repo_id`; fetched only when `allow_download`."""
    from huggingface_hub import snapshot_download

    try:
        if allow_download:
            return Path(snapshot_download(repo_id, allow_patterns=_DOWNLOADED, ignore_patterns=_NOT_NEEDED))
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError) as error:  # not cached (or not on the hub), or not a repo id
        if allow_download:
            advice = f"could not be downloaded ({type(error).__name__}); check the id, or pass a local folder"
        else:
            advice = (
                f"is neither a folder nor in the Hugging Face cache; pass a local diffusers folder, download "
                f"it first (hf download {repo_id}) or add --allow-download"
            )
        raise BaseModelError(f"base model {repo_id!r} {advice}") from None


def _config_name(subfolder: str) -> str:
    return "scheduler_config.json" if subfolder == "scheduler" else "config.json"
