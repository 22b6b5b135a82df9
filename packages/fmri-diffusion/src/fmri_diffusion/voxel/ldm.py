"""Staged training of the fMRI-space latent diffusion model, and its evaluation against simple baselines.

Stage 1 fits the voxel VAE (best weights by held-out reconstruction loss); stage 2 fits the latent DDPM on
the VAE's posterior means of the training patterns. Both stages run through the package's one training
loop (accelerate: devices, mixed precision, checkpoints) and save with save_pretrained, so either can be
reloaded alone. Evaluation compares the VAE with a PCA of the same latent size, and generated patterns with
a Gaussian of the training mean and covariance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from fmri_diffusion.models.voxel_denoiser import LatentDenoiser, sample_latents
from fmri_diffusion.models.voxel_vae import VoxelVAE, vae_loss
from fmri_diffusion.schedulers import Sampler, Schedule, sampling_scheduler, training_scheduler
from fmri_diffusion.training.denoising import FinetuneConfig, finetune
from fmri_encoders.persistence import load_settings, save_settings
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import Batch, BatchSampler, TrainingConfig, TrainingResult
from fmri_encoders.training import train as train_model
from fmri_eval.atomic import atomic_output_dir
from fmri_eval.fmri_metrics import distribution_metrics, reconstruction_metrics

LATENT_FILE = "latent.json"


@dataclass(frozen=True)
class FmriLDMConfig:
    """Sizes, loss weights and budgets of both stages (defaults: minutes on a laptop CPU)."""

    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256)
    dropout: float = 0.1
    beta: float = 1e-3
    vae_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            max_steps=2000, batch_size=64, learning_rate=1e-3, ema_decay=None
        )
    )
    denoiser_width: int = 256
    denoiser_blocks: int = 4
    schedule: Schedule = "cosine"
    ddpm_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(max_steps=3000, batch_size=128, learning_rate=1e-3)
    )
    sampler: Sampler = "ddim"
    num_inference_steps: int = 50
    validate_every: int = 100


@dataclass
class FmriLDM:
    """The trained pair and the sampler that draws from it."""

    vae: VoxelVAE
    denoiser: LatentDenoiser
    scheduler: DDPMScheduler
    latent_scale: float

    def save(self, folder: Path) -> None:
        """Write vae/, denoiser/, scheduler/ and latent.json; the folder appears only once complete."""
        with atomic_output_dir(folder) as staging:
            self.vae.save_pretrained(staging / "vae")
            self.denoiser.save_pretrained(staging / "denoiser")
            self.scheduler.save_pretrained(staging / "scheduler")
            save_settings(staging / LATENT_FILE, {"latent_scale": self.latent_scale})

    @classmethod
    def load(cls, folder: str | Path) -> FmriLDM:
        folder = Path(folder)
        if not (folder / "vae" / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no vae/ of a trained fMRI LDM; pass the folder `train` wrote")
        return cls(
            vae=VoxelVAE.from_pretrained(folder / "vae", local_files_only=True).eval(),
            denoiser=LatentDenoiser.from_pretrained(folder / "denoiser", local_files_only=True).eval(),
            scheduler=DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True),
            latent_scale=float(load_settings(folder / LATENT_FILE)["latent_scale"]),
        )

    def to(self, device: str) -> FmriLDM:
        self.vae.to(device)
        self.denoiser.to(device)
        return self

    @torch.no_grad()
    def reconstruct(self, fmri: np.ndarray) -> np.ndarray:
        """Encode to the posterior mean and decode: the VAE's reconstruction of [n, voxels] patterns."""
        x = torch.from_numpy(np.asarray(fmri, np.float32)).to(self.vae.device)
        return self.vae(x)[0].cpu().numpy()

    @torch.no_grad()
    def encode(self, fmri: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(fmri, np.float32)).to(self.vae.device)
        return self.vae.encode(x)[0].cpu().numpy()

    @torch.no_grad()
    def generate(self, n: int, *, sampler: Sampler = "ddim", steps: int = 50, seed: int = 0) -> np.ndarray:
        """n new patterns [n, voxels]: latents from the DDPM, decoded by the VAE."""
        scheduler = sampling_scheduler(sampler, self.scheduler)
        latents = sample_latents(
            self.denoiser,
            scheduler,
            n,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(seed),
        )
        return self.vae.decode(latents.to(self.vae.device) / self.latent_scale).cpu().numpy()


def train_fmri_ldm(
    train: np.ndarray,
    validation: np.ndarray,
    config: FmriLDMConfig,
    *,
    seed: int = 0,
    device: str = "auto",
    out_dir: Path | None = None,
    progress: bool = True,
) -> tuple[FmriLDM, dict[str, TrainingResult]]:
    """Stage 1 (VAE, best by validation loss), then stage 2 (latent DDPM); saved to out_dir/model."""
    torch.manual_seed(seed)
    x_train = torch.from_numpy(np.asarray(train, np.float32))
    x_valid = torch.from_numpy(np.asarray(validation, np.float32))
    vae = VoxelVAE(x_train.shape[1], config.latent_dim, config.hidden, config.dropout)

    def vae_step(model: VoxelVAE, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        x = batch["x"]
        noise = torch.randn(len(x), config.latent_dim, generator=generator).to(x.device)
        reconstruction, mu, logvar = model(x, noise)
        return vae_loss(reconstruction, x, mu, logvar, config.beta)

    def held_out_loss(model: VoxelVAE) -> float:
        x = x_valid.to(model.device)
        reconstruction, mu, logvar = model(x)
        return float(vae_loss(reconstruction, x, mu, logvar, config.beta))

    vae_training = replace(config.vae_training, seed=seed, device=device, progress=progress)
    results = {
        "vae": train_model(
            vae,
            vae_step,
            BatchSampler({"x": x_train}, vae_training.batch_size, seed=seed),
            vae_training,
            out_dir=None if out_dir is None else out_dir / "vae-training",
            description="voxel vae",
            validate=held_out_loss,
            validate_every=config.validate_every,
        )
    }
    vae.eval()
    with torch.no_grad():
        latents = vae.encode(x_train.to(vae.device))[0].cpu()
    latent_scale = 1.0 / max(float(latents.std()), 1e-6)  # unit-variance latents for the DDPM
    denoiser = LatentDenoiser(config.latent_dim, config.denoiser_width, config.denoiser_blocks)
    scheduler = training_scheduler(config.schedule)
    ddpm_training = replace(config.ddpm_training, seed=seed, device=device, progress=progress)
    results["ddpm"] = finetune(
        denoiser,
        {"clean": latents * latent_scale},
        scheduler,
        FinetuneConfig(adapter="full", condition_dropout=0.0, training=ddpm_training),
        out_dir=None if out_dir is None else out_dir / "ddpm-training",
        description="latent ddpm",
    )
    model = FmriLDM(
        vae=vae.cpu(), denoiser=denoiser.eval().cpu(), scheduler=scheduler, latent_scale=latent_scale
    )
    if out_dir is not None:
        model.save(out_dir / "model")
    return model.to(resolve_device(device)), results


@dataclass(frozen=True)
class FmriLDMEvaluation:
    """The scores, and what the report draws: the held-out reconstructions and the latent codes of training,
    held-out and generated patterns (the generated ones being those scored)."""

    metrics: dict[str, float]
    reconstruction: np.ndarray
    latents: dict[str, np.ndarray]


def evaluate_fmri_ldm(
    model: FmriLDM,
    train: np.ndarray,
    test: np.ndarray,
    *,
    n_generated: int | None = None,
    seed: int = 0,
    sampler: Sampler = "ddim",
    steps: int = 50,
) -> FmriLDMEvaluation:
    """Metrics as a flat mapping: VAE and PCA (same latent size) reconstruction of held-out patterns, and
    generated patterns and a training-fitted Gaussian each compared with the held-out distribution."""
    reconstruction = model.reconstruct(test)
    metrics: dict[str, float] = {}
    metrics |= _prefixed("vae_reconstruction", reconstruction_metrics(test, reconstruction))
    pca = _pca_reconstruction(train, test, model.vae.config.latent_dim)
    metrics |= _prefixed("pca_reconstruction", reconstruction_metrics(test, pca))
    n = n_generated or len(test)
    generated = model.generate(n, sampler=sampler, steps=steps, seed=seed)
    metrics |= _prefixed("generated", distribution_metrics(test, generated))
    rng = np.random.default_rng(seed)
    gaussian = rng.multivariate_normal(train.mean(0), np.cov(train, rowvar=False), size=n, method="eigh")
    metrics |= _prefixed("gaussian", distribution_metrics(test, gaussian))
    latents = {
        "training": model.encode(train),
        "held out": model.encode(test),
        "generated": model.encode(generated),
    }
    return FmriLDMEvaluation(metrics, reconstruction, latents)


def _pca_reconstruction(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    basis = vt[:k].T
    return (test - mean) @ basis @ basis.T + mean


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in values.items()}
