"""Population receptive fields on a stimulus patch grid: each voxel's response modelled as a gain times the
patches seen through a Gaussian window, plus an offset (Dumoulin & Wandell 2008, on a K x K patch design).

Why not a ridge encoding model here: with the ~16 distinct images a Miyawaki fold trains on, ridge weights
lie in the span of those images, so an image outside it is predicted from its projection onto them alone. A
pRF has four numbers per voxel (centre, size, gain, plus an offset), fitted by a grid search over centres and
sizes with the gain and offset by least squares, and predicts any pattern of patches: what the inverse
retinotopy decoder (fmri_encoders.methods.inverse_retinotopy) needs to judge images unlike the training ones.
Within limits: a patch no training stimulus varies says nothing about how a voxel responds to it, so the
windows give it no weight, and the model predicts nothing from it instead of extrapolating a Gaussian into
it. (On Miyawaki one fold holds out the only two figures that reach the grid's second and ninth columns;
extrapolated windows there made likelihood guidance wreck both figures.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from fmri_data.errors import DataError

CENTRE_STEP = 0.5
"""Candidate centres every half patch over the grid."""
SIZES = (0.5, 0.8, 1.2, 2.0, 3.0)
"""Candidate Gaussian widths (standard deviations, in patches): a patch to a third of Miyawaki's grid."""
VARIED = 0.5
"""A patch counts as varied by the training stimuli where its values span at least this fraction of the
range of all patch values (half the off-on step of a binary design)."""
NOISE_FLOOR = 1e-3
"""Keeps a voxel the model fits perfectly (in sample) from claiming infinite precision: the smallest noise
variance, as a fraction of the voxel's variance."""


def gaussian_windows(grid: int, step: float = CENTRE_STEP, sizes: tuple[float, ...] = SIZES) -> np.ndarray:
    """[candidates, grid * grid] unit-sum Gaussian windows; the candidates run over sizes, then rows, then
    columns of the centre."""
    centres = np.arange(0.0, grid - 1 + 1e-9, step)
    rows, cols = np.mgrid[0:grid, 0:grid]
    size, centre_row, centre_col = (
        axis.reshape(-1, 1, 1) for axis in np.meshgrid(sizes, centres, centres, indexing="ij")
    )
    windows = np.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * size**2))
    return (windows / windows.sum(axis=(1, 2), keepdims=True)).reshape(len(windows), grid * grid)


@dataclass(frozen=True)
class ReceptiveFields:
    """One Gaussian pRF per voxel on a grid x grid patch design.

    windows: [voxels, grid * grid] each voxel's chosen window; gains, offsets: its response = gain *
    (window . patches) + offset; explained: in-sample fraction of variance explained (r squared);
    noise: variance of its residuals on the training trials (the likelihood's per-voxel noise). A window
    is one of gaussian_windows' cut to the patches the training stimuli vary (no longer unit-sum there).
    """

    grid: int
    windows: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    explained: np.ndarray
    noise: np.ndarray

    @classmethod
    def fit(cls, patches: np.ndarray, fmri: np.ndarray) -> Self:
        """patches [n, grid, grid] (the stimuli's patch values), fmri [n, voxels]: each voxel's best window
        by variance explained, with its least-squares gain and offset; windows are cut to the patches the
        training stimuli vary."""
        patches = np.asarray(patches, dtype=np.float64)
        fmri = np.asarray(fmri, dtype=np.float64)
        if len(patches) != len(fmri) or patches.ndim != 3 or patches.shape[1] != patches.shape[2]:
            raise DataError(
                f"pRF fit needs [n, K, K] patches and [n, voxels] fMRI of the same trials, got "
                f"{patches.shape} and {fmri.shape}"
            )
        grid = patches.shape[1]
        flat = patches.reshape(len(patches), -1)
        bank = gaussian_windows(grid) * (np.ptp(flat, axis=0) > VARIED * np.ptp(flat))
        drives = flat @ bank.T
        drives -= drives.mean(axis=0)
        centred = fmri - fmri.mean(axis=0)
        drive_power = np.sum(drives**2, axis=0)
        if not np.any(drive_power > 0):
            raise DataError(
                "pRF fit needs training stimuli that differ; every patch has one value throughout"
            )
        covariance = drives.T @ centred
        explained = covariance**2 / (
            np.maximum(drive_power, 1e-12)[:, None] * np.maximum(np.sum(centred**2, axis=0), 1e-12)
        )
        best = explained.argmax(axis=0)
        voxels = np.arange(fmri.shape[1])
        gains = covariance[best, voxels] / np.maximum(drive_power[best], 1e-12)
        drive = flat @ bank[best].T
        offsets = fmri.mean(axis=0) - gains * drive.mean(axis=0)
        noise = (fmri - gains * drive - offsets).var(axis=0) + NOISE_FLOOR * fmri.var(axis=0) + 1e-12
        return cls(grid, bank[best], gains, offsets, explained[best, voxels], noise)

    @property
    def weights(self) -> np.ndarray:
        """[voxels, grid * grid]: the linear map from patches to predicted responses (minus offsets)."""
        return self.gains[:, None] * self.windows

    def predict(self, patches: np.ndarray) -> np.ndarray:
        """[n, grid, grid] patches -> [n, voxels] predicted responses."""
        return np.asarray(patches).reshape(len(patches), -1) @ self.weights.T + self.offsets

    def best(self, count: int | None) -> tuple[Self, np.ndarray]:
        """The `count` voxels the model explains best (None: all), and their indices into the fMRI."""
        keep = np.argsort(self.explained)[::-1][: count or len(self.explained)]
        return (
            type(self)(
                self.grid,
                self.windows[keep],
                self.gains[keep],
                self.offsets[keep],
                self.explained[keep],
                self.noise[keep],
            ),
            keep,
        )
