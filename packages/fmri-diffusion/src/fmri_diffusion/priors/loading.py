"""The base model the sd-* methods adapt: a user's pretrained Stable Diffusion, or a small one trained here.

Both are the same diffusers classes (UNet2DConditionModel + AutoencoderKL + a DDPMScheduler) read from the
same folder layout (`unet/`, `vae/`, `scheduler/`) by `load_base_model`, so the small model exercises the
code path a real Stable Diffusion takes. The small one is pre-trained on the simulator's image corpus
(random patterns, blobs and strokes; never a test figure) at a laptop-sized resolution and cached: the
"pretrained model -> domain fine-tune" story at a size a CPU can run.

Stable Diffusion learned to listen to its cross-attention from text; the small model learns it from an
image embedding, as image-variation models do (unCLIP, Versatile Diffusion): its `conditioner/` maps an
image's (noised) latents to condition tokens. A UNet pre-trained on an empty context would ignore any tokens
a fine-tune sends. Since ridge predicts exactly such latents from fMRI, the fMRI conditioner of a fine-tune
starts from this embedder, and the noise it was trained with stands in for ridge's error.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from fmri_data.methods import MethodSettings
from fmri_data.simulator import image_corpus
from fmri_diffusion.models.builders import small_unet
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.schedulers import training_scheduler
from fmri_diffusion.training.autoencoder import AutoencoderConfig, train_autoencoder_on_pixels
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training.loop import Batch, TrainingConfig
from fmri_eval.atomic import atomic_output_dir

SUBFOLDERS = ("unet", "vae", "scheduler")


class BaseModelError(ValueError):
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

    def save(self, folder: Path) -> None:
        for name in SUBFOLDERS:
            getattr(self, name).save_pretrained(folder / name)
        if self.conditioner is not None:
            self.conditioner.save_pretrained(folder / "conditioner")


def base_model_folder(name_or_path: str | Path, *, allow_download: bool = False) -> Path:
    """The local folder of a base model (a path, or a Hugging Face id resolved in the cache), checked to
    hold unet/, vae/ and scheduler/: apps call it before any work, so a wrong --pretrained fails at once."""
    folder = Path(name_or_path).expanduser()
    if not folder.exists():
        folder = _cached_snapshot(str(name_or_path), allow_download)
    missing = [name for name in SUBFOLDERS if not (folder / name / _config_name(name)).is_file()]
    if missing:
        raise BaseModelError(
            f"{folder}: no {', '.join(f'{m}/' for m in missing)} with a config; pass a diffusers Stable "
            "Diffusion folder (unet/, vae/, scheduler/), e.g. one written by save_pretrained"
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
    folder = base_model_folder(source, allow_download=allow_download)
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


@dataclass(frozen=True)
class SmallBaseConfig:
    """The small base model and its pre-training (about 4 minutes on two CPU cores, once per image size)."""

    resolution: int = 32
    channels: int = 3
    vae_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (64, 128)
    token_dim: int = 64
    n_tokens: int = 8
    embedder_hidden: int = 512
    condition_noise: float = 1.0
    condition_dropout: float = 0.1
    corpus_size: int = 3000
    autoencoder: AutoencoderConfig = field(
        default_factory=lambda: AutoencoderConfig(
            max_shift=0, training=TrainingConfig(max_steps=400, batch_size=32, learning_rate=2e-3)
        )
    )
    unet_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(max_steps=1000, batch_size=32, learning_rate=1e-3)
    )

    def quick(self) -> SmallBaseConfig:
        tiny = TrainingConfig(max_steps=5, batch_size=8, warmup_steps=1, progress=False)
        return replace(
            self,
            vae_channels=(8, 8, 8),
            unet_channels=(8, 16),
            token_dim=8,
            n_tokens=2,
            embedder_hidden=16,
            corpus_size=24,
            autoencoder=replace(self.autoencoder, training=tiny),
            unet_training=tiny,
        )

    def key(self, image_size: int, seed: int) -> str:
        """A cache key: changing any setting, the stimulus size or the seed gives a new base model."""
        text = json.dumps([asdict(self), image_size, seed], sort_keys=True, default=str)
        return f"small-base-{image_size}px-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


_IN_PROCESS: dict[str, BaseModel] = {}


def base_model_for(settings: MethodSettings, config: SmallBaseConfig, image_size: int) -> BaseModel:
    """A method's base model: the user's `settings.pretrained` folder, else the small one (cached)."""
    if settings.pretrained:
        return load_base_model(settings.pretrained, allow_download=settings.allow_download)
    return small_base_model(
        config,
        image_size,
        seed=settings.seed,
        device=settings.device,
        cache_dir=settings.cache_dir,
        progress=settings.shows_progress(),
    )


def small_base_model(
    config: SmallBaseConfig,
    image_size: int,
    *,
    seed: int = 0,
    device: str = "auto",
    cache_dir: Path | None = None,
    progress: bool = True,
) -> BaseModel:
    """The small base model for stimuli of `image_size` px: from cache_dir if built before, else pre-train.

    The finished model is written to a staging folder and renamed, so a killed run leaves no
    half-written base model; within one process it is also kept in memory for the next fold.
    """
    key = config.key(image_size, seed)
    folder = None if cache_dir is None else Path(cache_dir) / key
    saved = folder is not None and (folder / "unet" / "config.json").is_file()
    if key not in _IN_PROCESS:
        if saved:
            _IN_PROCESS[key] = load_base_model(folder)
        else:
            _IN_PROCESS[key] = _pretrain(config, image_size, seed=seed, device=device, progress=progress)
    model = _IN_PROCESS[key]
    if folder is not None and not saved:
        with atomic_output_dir(folder) as staging:
            model.save(staging)
    copied = copy.deepcopy(model)  # a copy: fine-tuning changes the UNet it is given
    if folder is not None:
        copied.source, copied.folder = str(folder), folder  # what a saved fine-tune names as its base
    return copied


def _pretrain(
    config: SmallBaseConfig, image_size: int, *, seed: int, device: str, progress: bool
) -> BaseModel:
    """Autoencoder first, then the latent UNet with its image embedder, both on the image corpus."""
    images = image_corpus(config.corpus_size, image_size, np.random.default_rng(seed))
    pixels = to_pixels(torch.from_numpy(images), config.resolution, channels=config.channels, fit="resize")
    vae_config = replace(
        config.autoencoder,
        block_out_channels=config.vae_channels,
        latent_channels=config.latent_channels,
        training=replace(
            config.autoencoder.training, progress=progress and config.autoencoder.training.progress
        ),
    )
    vae = train_autoencoder_on_pixels(pixels, vae_config, seed=seed, device=device, description="base vae")
    latents = encode_latents(vae, pixels, device=device)
    latent_size = latents.shape[-1]
    torch.manual_seed(seed)
    unet = small_unet(
        sample_size=latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        cross_attention_dim=config.token_dim,
        block_out_channels=config.unet_channels,
    )
    embedder = FmriConditioner(
        latents[0].numel(), config.token_dim, n_tokens=config.n_tokens, hidden=config.embedder_hidden
    )
    scheduler = training_scheduler("linear")
    training = replace(
        config.unet_training, seed=seed, device=device, progress=progress and config.unet_training.progress
    )
    finetune(
        ConditionedUNet(unet, embedder),
        {"clean": latents},
        scheduler,
        FinetuneConfig(adapter="full", condition_dropout=config.condition_dropout, training=training),
        description="base unet",
        augment=partial(noisy_embedding_input, max_noise=config.condition_noise),
    )
    return BaseModel(
        unet=unet.eval().cpu(),
        vae=vae.eval().cpu(),
        scheduler=scheduler,
        source="pre-trained here",
        conditioner=embedder.eval().cpu(),
    )


def noisy_embedding_input(batch: Batch, generator: torch.Generator, *, max_noise: float) -> Batch:
    """The embedder sees each image's latents plus Gaussian noise of a random level in [0, max_noise]."""
    clean = batch["clean"]
    level = torch.rand(len(clean), 1, generator=generator) * max_noise
    noise = torch.randn(clean.flatten(1).shape, generator=generator)
    return {**batch, "condition": clean.flatten(1) + level * noise}


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, pixels: torch.Tensor, *, device: str = "auto", batch_size: int = 16
) -> torch.Tensor:
    """Scaled posterior-mean latents of model pixels [n, C, S, S] in [-1, 1], in batches, on the CPU."""
    vae = vae.to(resolve_device(device))
    chunks = [
        vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist.mean.float().cpu()
        for chunk in pixels.split(batch_size)
    ]
    return torch.cat(chunks) * vae.config.scaling_factor
