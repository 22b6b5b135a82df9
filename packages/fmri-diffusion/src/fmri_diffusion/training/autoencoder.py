"""Training the small AutoencoderKL whose latent space the `ldm` method denoises in."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from fmri_diffusion.models.builders import padded_size, small_autoencoder
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.training.augment import random_shift
from fmri_encoders.runtime import on_main_process
from fmri_encoders.training import BatchNoise, BatchSampler, TrainingConfig
from fmri_encoders.training import train as train_model
from fmri_eval.atomic import atomic_output_dir


@dataclass(frozen=True)
class AutoencoderConfig:
    """Size and training of the autoencoder; kl_weight keeps latents near N(0, 1) without blurring them."""

    block_out_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    kl_weight: float = 1e-4
    max_shift: int = 2
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(max_steps=800, batch_size=32, learning_rate=2e-3)
    )


def train_autoencoder(
    images: np.ndarray,
    config: AutoencoderConfig,
    *,
    seed: int,
    device: str,
    out_dir: Path | None = None,
    resume: str | None = None,
    pixel_size: int | None = None,
    initial: AutoencoderKL | None = None,
    compile: bool = False,
) -> AutoencoderKL:
    """Fit an AutoencoderKL to [n, H, W] images in [0, 1], zero-padded to pixel_size (default: the least
    size the autoencoder's downsampling allows), starting from `initial`'s weights where given.

    With out_dir: checkpoints go to out_dir/autoencoder, the result to out_dir/vae (save_pretrained);
    resume="latest" reloads a finished out_dir/vae, or continues its latest checkpoint. compile: train (and
    return) it with its encoder and decoder compiled (compile_autoencoder).
    """
    size = pixel_size or padded_size(images.shape[-1], len(config.block_out_channels) - 1)
    pixels = to_pixels(torch.from_numpy(images), size)
    return train_autoencoder_on_pixels(
        pixels,
        config,
        seed=seed,
        device=device,
        out_dir=out_dir,
        resume=resume,
        description="autoencoder",
        initial=initial,
        compile=compile,
    )


def train_autoencoder_on_pixels(
    pixels: torch.Tensor,
    config: AutoencoderConfig,
    *,
    seed: int,
    device: str,
    out_dir: Path | None = None,
    resume: str | None = None,
    description: str = "autoencoder",
    initial: AutoencoderKL | None = None,
    compile: bool = False,
) -> AutoencoderKL:
    """Fit an AutoencoderKL to model pixels [n, C, S, S] in [-1, 1] (see train_autoencoder for out_dir,
    initial and compile)."""
    if resume is not None and out_dir is not None and (out_dir / "vae" / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(out_dir / "vae", local_files_only=True).eval()
        if compile:
            compile_autoencoder(vae)
        return vae
    torch.manual_seed(seed)
    vae = small_autoencoder(
        sample_size=pixels.shape[-1],
        in_channels=pixels.shape[1],
        latent_channels=config.latent_channels,
        block_out_channels=config.block_out_channels,
    )
    if initial is not None:
        vae.load_state_dict(initial.state_dict())
    if compile:
        compile_autoencoder(vae)
    sampler = BatchSampler(
        {"x": pixels},
        config.training.batch_size,
        seed=seed,
        augment=lambda batch, gen: random_shift(batch, config.max_shift, gen, fill=-1.0),
    )

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor], draws: BatchNoise) -> torch.Tensor:
        posterior = model.encode(batch["x"]).latent_dist
        latents = posterior.mean + posterior.std * draws.randn(posterior.mean.shape).to(posterior.mean.device)
        reconstruction = model.decode(latents).sample
        return (
            F.mse_loss(reconstruction, batch["x"])
            + config.kl_weight * posterior.kl().mean() / latents[0].numel()
        )

    training = replace(config.training, seed=seed, device=device)
    train_model(
        vae,
        loss_fn,
        sampler,
        training,
        out_dir=None if out_dir is None else out_dir / "autoencoder",
        resume=resume,
        description=description,
    )
    vae.eval()
    if initial is not None:  # a UNet that starts from `initial`'s UNet learned its latents at its scale
        vae.register_to_config(scaling_factor=initial.config.scaling_factor)
    else:  # the latents' spread sets the diffusion scale: SD's convention of scaling them to unit variance
        with torch.no_grad():
            spread = vae.encode(pixels.to(vae.device)).latent_dist.mean.std().item()
        vae.register_to_config(scaling_factor=1.0 / max(spread, 1e-6))
    if out_dir is not None:  # whole or not at all, by the main process: `--resume` trusts it once there
        on_main_process(lambda: _save_whole(vae, out_dir / "vae"))
    return vae


def compile_autoencoder(vae: AutoencoderKL) -> None:
    """Its encoder and decoder through `torch.compile`, in place: training and every encoding or decoding
    call them, and the state-dict keys stay unchanged (it saves and loads as an eager one)."""
    vae.encoder.compile()
    vae.decoder.compile()


def _save_whole(vae: AutoencoderKL, folder: Path) -> None:
    with atomic_output_dir(folder) as staging:
        vae.save_pretrained(staging)
