"""Staged training of the fMRI-space latent diffusion model, and its evaluation against simple baselines.

Stage 1 fits the voxel VAE, which starts as the PCA of the training patterns; the weights kept are those
with the lowest reconstruction error on validation patterns, step 0 (that PCA) included, so the VAE is
never worse than PCA there. Stage 2 fits the latent DDPM on the VAE's posterior means of the training
patterns. Both stages run through the package's one training loop (accelerate: devices, mixed precision,
checkpoints) and save with save_pretrained, so either can be reloaded alone. Sampling is calibrated
(calibration.py): observation noise added, the draws' moments matched to the training latents'. Evaluation
compares the VAE with a PCA of the same latent size, and generated patterns, calibrated and raw, with a
Gaussian of the training mean and covariance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from safetensors.torch import save_model

from fmri_data.errors import DataError
from fmri_diffusion.models.voxel_denoiser import LatentDenoiser, sample_latents
from fmri_diffusion.models.voxel_vae import VoxelVAE, principal_axes, vae_loss
from fmri_diffusion.schedulers import Sampler, Schedule, sampling_scheduler, training_scheduler
from fmri_diffusion.training.denoising import FinetuneConfig, finetune
from fmri_diffusion.voxel.calibration import CALIBRATION_DRAWS, CALIBRATION_FILE, SampleCalibration
from fmri_encoders.persistence import load_settings, save_settings
from fmri_encoders.runtime import on_main_process, resolve_device
from fmri_encoders.training import Batch, BatchNoise, BatchSampler, TrainingConfig, TrainingResult
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
    validation_fraction: float = 0.1
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
    calibration: SampleCalibration

    def save(self, folder: Path) -> None:
        """Write vae/, denoiser/, scheduler/, latent.json and the calibration; the folder appears only once
        complete."""
        with atomic_output_dir(folder) as staging:
            self.vae.save_pretrained(staging / "vae")
            self.denoiser.save_pretrained(staging / "denoiser")
            self.scheduler.save_pretrained(staging / "scheduler")
            save_settings(staging / LATENT_FILE, {"latent_scale": self.latent_scale})
            self.calibration.save(staging / CALIBRATION_FILE)

    @classmethod
    def load(cls, folder: str | Path) -> FmriLDM:
        folder = Path(folder)
        if not (folder / "vae" / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no vae/ of a trained fMRI LDM; pass the folder `train` wrote")
        if not (folder / CALIBRATION_FILE).is_file():
            raise FileNotFoundError(
                f"{folder}: no {CALIBRATION_FILE} (saved before sampling was calibrated); train it again"
            )
        return cls(
            vae=VoxelVAE.from_pretrained(folder / "vae", local_files_only=True).eval(),
            denoiser=LatentDenoiser.from_pretrained(folder / "denoiser", local_files_only=True).eval(),
            scheduler=DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True),
            latent_scale=float(load_settings(folder / LATENT_FILE)["latent_scale"]),
            calibration=SampleCalibration.load(folder / CALIBRATION_FILE),
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
    def generate(
        self, n: int, *, sampler: Sampler = "ddim", steps: int = 50, seed: int = 0, calibrated: bool = True
    ) -> np.ndarray:
        """n new patterns [n, voxels]: latents from the DDPM, decoded by the VAE.

        calibrated: the draws' mean and covariance matched to the training latents' (estimated on at least
        CALIBRATION_DRAWS draws, the n returned among them) and the observation noise added; False gives
        the DDPM's decoded draws as they come.
        """
        scheduler = sampling_scheduler(sampler, self.scheduler)
        latents = sample_latents(
            self.denoiser,
            scheduler,
            max(n, CALIBRATION_DRAWS) if calibrated else n,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(seed),
        )
        latents = latents.double().cpu().numpy() / self.latent_scale
        if calibrated:
            latents = self.calibration.match_moments(latents)[:n]
        patterns = self._decode(latents)
        if calibrated:
            patterns += self.calibration.observation_noise(n, np.random.default_rng(seed))
        return patterns

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(np.asarray(latents, np.float32)).to(self.vae.device)
        return self.vae.decode(z).cpu().numpy()


def train_fmri_ldm(
    train: np.ndarray,
    validation: np.ndarray | None,
    config: FmriLDMConfig,
    *,
    seed: int = 0,
    device: str = "auto",
    out_dir: Path | None = None,
    progress: bool = True,
) -> tuple[FmriLDM, dict[str, TrainingResult]]:
    """Stage 1 (VAE from the PCA of `train`, best by validation reconstruction error, step 0 included), then
    stage 2 (latent DDPM on all of `train`); saved to out_dir/model.

    validation: patterns that choose the VAE's weights, never those the evaluation scores; None holds out
    `config.validation_fraction` of `train` (seeded) from the VAE's gradient steps.
    """
    torch.manual_seed(seed)
    train = np.asarray(train, np.float32)
    if validation is None:
        fit, validation = _validation_split(train, config.validation_fraction, seed)
    else:
        fit, validation = train, np.asarray(validation, np.float32)
    x_train, x_fit, x_valid = (torch.from_numpy(a) for a in (train, fit, validation))
    # the PCA of all of `train`: the baseline evaluate_fmri_ldm compares with, which keeping step 0 gives
    vae = VoxelVAE(x_train.shape[1], config.latent_dim, config.hidden, config.dropout).init_from_pca(train)

    def vae_step(model: VoxelVAE, batch: Batch, draws: BatchNoise) -> torch.Tensor:
        x = batch["x"]
        noise = draws.randn((len(x), config.latent_dim)).to(x.device)
        reconstruction, mu, logvar = model(x, noise)
        return vae_loss(reconstruction, x, mu, logvar, config.beta)

    def held_out_loss(model: VoxelVAE) -> float:
        """Reconstruction MSE of the posterior means: what the PCA baseline is compared on."""
        x = x_valid.to(model.device)
        return float(F.mse_loss(model(x)[0], x))

    vae.eval()
    with torch.no_grad():
        start_loss = held_out_loss(vae)
    start_state = {name: value.clone() for name, value in vae.state_dict().items()}
    vae_training = replace(config.vae_training, seed=seed, device=device, progress=progress)
    vae_out = None if out_dir is None else out_dir / "vae-training"
    results = {
        "vae": train_model(
            vae,
            vae_step,
            BatchSampler({"x": x_fit}, vae_training.batch_size, seed=seed),
            vae_training,
            out_dir=vae_out,
            description="voxel vae",
            validate=held_out_loss,
            validate_every=config.validate_every,
        )
    }
    _keep_start_unless_beaten(vae, results["vae"], held_out_loss, start_loss, start_state, vae_out)
    with torch.no_grad():
        latents = vae.encode(x_train.to(vae.device))[0].cpu()
        x = x_valid.to(vae.device)
        residuals = (x - vae(x)[0]).cpu().numpy()
    latent_scale = 1.0 / max(float(latents.std()), 1e-6)  # unit-variance latents for the DDPM
    calibration = SampleCalibration.fit(latents.numpy(), residuals)
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
        vae=vae.cpu(),
        denoiser=denoiser.eval().cpu(),
        scheduler=scheduler,
        latent_scale=latent_scale,
        calibration=calibration,
    )
    if out_dir is not None:
        on_main_process(lambda: model.save(out_dir / "model"))
    return model.to(resolve_device(device)), results


@dataclass(frozen=True)
class FmriLDMEvaluation:
    """The scores, and what the report draws: the held-out reconstructions, the latent codes of training,
    held-out and generated patterns, and each generator's first draw (keyed as in the metrics)."""

    metrics: dict[str, float]
    reconstruction: np.ndarray
    latents: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]


GENERATED_PATTERNS = 1000
"""Patterns each generator draws per repeat, at least: enough that the scores measure the generator's
distribution rather than its sampling noise (the held-out sets hold 10 to 180 patterns)."""


def evaluate_fmri_ldm(
    model: FmriLDM,
    train: np.ndarray,
    test: np.ndarray,
    *,
    shifted: np.ndarray | None = None,
    n_generated: int | None = None,
    repeats: int = 5,
    seed: int = 0,
    sampler: Sampler = "ddim",
    steps: int = 50,
) -> FmriLDMEvaluation:
    """Metrics as a flat mapping: VAE and PCA (same latent size) reconstruction of held-out patterns; and
    four generators each compared with the held-out distribution, as the mean over `repeats` seeded draws
    (`<generator>/<metric>`) and its std (`<metric>_sd`): the LDM calibrated and raw, a training-fitted
    Gaussian, and the training patterns resampled (what a perfect model of the training distribution
    scores). With `shifted` (held-out patterns of another distribution), the same under "shifted/"."""
    if repeats < 1:
        raise DataError(f"repeats={repeats}: each generator needs at least one draw to be scored")
    reconstruction = model.reconstruct(test)
    metrics: dict[str, float] = {}
    metrics |= _prefixed("vae_reconstruction", reconstruction_metrics(test, reconstruction))
    pca = _pca_reconstruction(train, test, model.vae.config.latent_dim)
    metrics |= _prefixed("pca_reconstruction", reconstruction_metrics(test, pca))
    n = n_generated or max(len(test), GENERATED_PATTERNS)
    references = {"": test} if shifted is None else {"": test, "shifted/": shifted}
    first_draws: dict[str, np.ndarray] = {}
    for name, draw in _generators(model, train, n, sampler, steps).items():
        scores: dict[str, list[dict[str, float]]] = {prefix: [] for prefix in references}
        for repeat in range(repeats):
            sample = draw(seed + repeat)
            if repeat == 0:
                first_draws[name] = sample
            for prefix, reference in references.items():
                scores[prefix].append(distribution_metrics(reference, sample))
        for prefix, runs in scores.items():
            metrics |= _prefixed(f"{prefix}{name}", _mean_and_sd(runs))
    latents = {
        "training": model.encode(train),
        "held out": model.encode(test),
        "generated": model.encode(first_draws["generated"]),
    }
    return FmriLDMEvaluation(metrics, reconstruction, latents, first_draws)


def _generators(
    model: FmriLDM, train: np.ndarray, n: int, sampler: Sampler, steps: int
) -> dict[str, Callable[[int], np.ndarray]]:
    """Each generator compared, as seed -> n patterns [n, voxels]."""
    covariance = np.cov(train, rowvar=False)
    return {
        "generated": lambda seed: model.generate(n, sampler=sampler, steps=steps, seed=seed),
        "generated_raw": lambda seed: model.generate(
            n, sampler=sampler, steps=steps, seed=seed, calibrated=False
        ),
        "gaussian": lambda seed: np.random.default_rng(seed).multivariate_normal(
            train.mean(0), covariance, size=n, method="eigh"
        ),
        "training_resampled": lambda seed: train[np.random.default_rng(seed).integers(0, len(train), n)],
    }


def _mean_and_sd(runs: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the runs, and its std across them as `<metric>_sd`."""
    values = {name: np.array([run[name] for run in runs]) for name in runs[0]}
    return {name: float(v.mean()) for name, v in values.items()} | {
        f"{name}_sd": float(v.std()) for name, v in values.items()
    }


def _validation_split(patterns: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation): a seeded `fraction` of the rows (at least one) held out, the rest to fit."""
    if not 0 < fraction < 1 or len(patterns) < 2:
        raise DataError(
            f"a validation split needs 0 < validation_fraction < 1 and 2 or more training patterns, got "
            f"{fraction} and {len(patterns)}"
        )
    order = np.random.default_rng(seed).permutation(len(patterns))
    n_valid = min(max(1, round(fraction * len(patterns))), len(patterns) - 1)
    return patterns[np.sort(order[n_valid:])], patterns[np.sort(order[:n_valid])]


@torch.no_grad()
def _keep_start_unless_beaten(
    vae: VoxelVAE,
    result: TrainingResult,
    held_out_loss: Callable[[VoxelVAE], float],
    start_loss: float,
    start_state: dict[str, torch.Tensor],
    out_dir: Path | None,
) -> None:
    """The loop validates from its first interval on; step 0 (the PCA start) competes here, both scored in
    full precision, and wins ties. The result's record then says so, and out_dir/best holds it."""
    result.validation.insert(0, (0, start_loss))
    if result.best_step is not None and held_out_loss(vae) < start_loss:
        return
    vae.load_state_dict(start_state)
    result.best_step = 0
    result.best_state = {name: value.detach().clone() for name, value in vae.state_dict().items()}
    if out_dir is not None:
        on_main_process(lambda: _save_best(vae, out_dir / "best"))


def _save_best(vae: VoxelVAE, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(vae, str(folder / "model.safetensors"))


def _pca_reconstruction(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    mean, axes = principal_axes(train, k)
    return (test - mean) @ axes.T @ axes + mean


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in values.items()}
