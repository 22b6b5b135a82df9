"""Simulated voxels: Gaussian population receptive fields (pRFs) in V1-V3 and their noisy responses.

A voxel's response to a patch pattern follows the compressive spatial summation (CSS) model of Kay et al.
(2013): baseline + gain * (pRF . contrast) ** exponent, where the pRF is a 2-D Gaussian in the visual field
whose size grows with eccentricity and from V1 to V3 (Dumoulin & Wandell 2008).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

FIELD_HALF_WIDTH = 6.0  # degrees: Miyawaki's stimulus field is 12 x 12 degrees
AREAS = ("V1", "V2", "V3")
_AREA_SHARE = np.array([0.45, 0.33, 0.22])
_SIZE_INTERCEPT = np.array([0.4, 0.5, 0.6])  # pRF sigma at the fovea, degrees
_SIZE_SLOPE = np.array([0.12, 0.18, 0.28])  # growth of sigma per degree of eccentricity
_MAGNIFICATION_OFFSET = 0.75  # degrees; cortical distance grows as log(eccentricity + offset)


@dataclass(frozen=True)
class Population:
    """One subject's voxels: pRF centre (x right, y up) and size in degrees, area index, gain, baseline."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    area: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray

    def roi_masks(self) -> dict[str, np.ndarray]:
        """Visual-area membership of each voxel."""
        return {name: self.area == index for index, name in enumerate(AREAS)}

    def cortical_coords(self) -> np.ndarray:
        """[n_voxels, 3] float32 pseudo-cortical position: log eccentricity, polar angle (rad), area index.

        A log-polar map, like the cortex's, so that neighbouring voxels have neighbouring pRFs.
        """
        eccentricity = np.log(np.hypot(self.x, self.y) + _MAGNIFICATION_OFFSET)
        angle = np.arctan2(self.y, self.x)
        return np.stack([eccentricity, angle, self.area], axis=1).astype(np.float32)


def sample_population(n_voxels: int, rng: np.random.Generator) -> Population:
    """Draw pRFs that cover the stimulus field with cortical magnification (more voxels near the fovea)."""
    x, y = _sample_centres(n_voxels, rng)
    area = rng.choice(len(AREAS), size=n_voxels, p=_AREA_SHARE)
    eccentricity = np.hypot(x, y)
    size_jitter = np.exp(rng.normal(0.0, 0.15, n_voxels))
    sigma = (_SIZE_INTERCEPT[area] + _SIZE_SLOPE[area] * eccentricity) * size_jitter
    gain = np.exp(rng.normal(0.0, 0.3, n_voxels))
    baseline = rng.normal(0.0, 0.5, n_voxels)
    return Population(x=x, y=y, sigma=sigma, area=area, gain=gain, baseline=baseline)


def _sample_centres(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centres uniform in log(eccentricity + offset) and polar angle, kept inside the square field."""
    offset = _MAGNIFICATION_OFFSET
    max_eccentricity = FIELD_HALF_WIDTH * np.sqrt(2.0)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    while sum(len(x) for x in xs) < n:
        log_ecc = rng.uniform(np.log(offset), np.log(max_eccentricity + offset), 2 * n)
        eccentricity = np.exp(log_ecc) - offset
        angle = rng.uniform(0.0, 2.0 * np.pi, 2 * n)
        x, y = eccentricity * np.cos(angle), eccentricity * np.sin(angle)
        inside = (np.abs(x) <= FIELD_HALF_WIDTH) & (np.abs(y) <= FIELD_HALF_WIDTH)
        xs.append(x[inside])
        ys.append(y[inside])
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def prf_weights(population: Population, grid: int) -> np.ndarray:
    """[n_voxels, grid * grid]: the share of each pRF's Gaussian that falls on each patch (row-major, top row
    first), integrated exactly so that pRFs smaller than a patch are not missed."""
    edges = np.linspace(-FIELD_HALF_WIDTH, FIELD_HALF_WIDTH, grid + 1)
    across = _gaussian_mass(edges, population.x, population.sigma)
    down = _gaussian_mass(edges, population.y, population.sigma)[:, ::-1]
    return (down[:, :, None] * across[:, None, :]).reshape(len(population.x), grid * grid)


def _gaussian_mass(edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """[n, len(edges) - 1]: mass of 1-D Gaussians between consecutive edges."""
    return np.diff(ndtr((edges[None, :] - centre[:, None]) / sigma[:, None]), axis=1)


def responses(population: Population, patterns: np.ndarray, exponent: float) -> np.ndarray:
    """Noise-free responses [n_patterns, n_voxels] to [n_patterns, grid, grid] patch contrasts (CSS model)."""
    grid = patterns.shape[-1]
    drive = patterns.reshape(len(patterns), grid * grid) @ prf_weights(population, grid).T
    return population.baseline + population.gain * np.clip(drive, 0.0, None) ** exponent


def measure(
    signal: np.ndarray, run: np.ndarray, *, noise: float, drift: float, rng: np.random.Generator
) -> np.ndarray:
    """Add Gaussian noise and a slow per-run drift (offset plus linear trend) to noise-free responses.

    Both are scaled by the mean over voxels of the signal's sd across trials, so `noise` is an inverse SNR
    and voxels with little stimulus drive end up noise-dominated, as real peripheral voxels are.
    """
    scale = float(signal.std(axis=0).mean())
    measured = signal + rng.normal(0.0, noise * scale, signal.shape)
    return measured + _run_drift(run, signal.shape[1], drift * scale, rng)


def _run_drift(run: np.ndarray, n_voxels: int, size: float, rng: np.random.Generator) -> np.ndarray:
    """[n_trials, n_voxels]: per run and voxel, a random offset plus a linear trend across the run."""
    drift = np.empty((len(run), n_voxels))
    for run_id in np.unique(run):
        trials = np.flatnonzero(run == run_id)
        time = np.linspace(-0.5, 0.5, len(trials))[:, None]
        offset, slope = rng.normal(0.0, size, (2, 1, n_voxels))
        drift[trials] = offset + slope * time
    return drift
