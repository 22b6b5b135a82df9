"""What turns the latent DDPM's draws into samples of the training patterns' distribution.

Two measured corrections (README, "Modelling the brain data itself"):
- the VAE's generative model is p(x | z) = N(decode(z), σ²): decoding the posterior mean alone drops the
  residual every held-out pattern carries, so samples are drawn with it, σ per voxel from the VAE's
  residuals on validation patterns;
- a DDPM fitted on a few hundred latents draws them too narrowly (generated / training latent std about
  0.75-0.9 here, 0.99 for the same loop given 20,000 samples), so a batch of draws is mapped affinely onto
  the training latents' mean and covariance. Training statistics only: the shape beyond the second moment
  stays the DDPM's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

CALIBRATION_FILE = "calibration.safetensors"
CALIBRATION_DRAWS = 2048
"""Latents drawn at least, however few are asked for, to estimate the draws' own mean and covariance."""


@dataclass(frozen=True)
class SampleCalibration:
    """The training latents' mean [k] and covariance [k, k], and the per-voxel observation std [voxels]."""

    latent_mean: np.ndarray
    latent_covariance: np.ndarray
    observation_std: np.ndarray

    @classmethod
    def fit(cls, training_latents: np.ndarray, validation_residuals: np.ndarray) -> SampleCalibration:
        """From the posterior means of the training patterns and the VAE's residuals on validation ones."""
        latents = np.asarray(training_latents, np.float64)
        residuals = np.asarray(validation_residuals, np.float64)
        return cls(
            latent_mean=latents.mean(0),
            latent_covariance=np.atleast_2d(np.cov(latents, rowvar=False)),
            observation_std=np.sqrt((residuals**2).mean(0)),  # the σ of N(decode(z), σ²) that fits best
        )

    def match_moments(self, draws: np.ndarray) -> np.ndarray:
        """`draws` [n, k] mapped affinely so that their mean and covariance are the training latents'."""
        draws = np.asarray(draws, np.float64)
        centred = draws - draws.mean(0)
        whiten = _symmetric_power(np.atleast_2d(np.cov(draws, rowvar=False)), -0.5)
        colour = _symmetric_power(self.latent_covariance, 0.5)
        return centred @ whiten @ colour + self.latent_mean

    def observation_noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, self.observation_std.size)) * self.observation_std

    def save(self, path: Path) -> None:
        save_file(
            {
                "latent_mean": self.latent_mean,
                "latent_covariance": self.latent_covariance,
                "observation_std": self.observation_std,
            },
            str(path),
        )

    @classmethod
    def load(cls, path: Path) -> SampleCalibration:
        return cls(**load_file(str(path)))


def _symmetric_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """matrix^power of a symmetric positive semi-definite matrix, its eigenvalues floored for stability."""
    values, vectors = np.linalg.eigh(matrix)
    floor = max(float(values.max()), 1e-12) * 1e-8
    return (vectors * np.maximum(values, floor) ** power) @ vectors.T
