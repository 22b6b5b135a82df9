"""A simulated experiment at the Natural Scenes Dataset's scale, written to disk in NSD's published layout.

What fmri_data.loaders.nsd reads from a real download, at the real sizes by default: 10,000 distinct images of
which 1,000 are shared (the given test split), each shown 3 times in a 30,000-trial master ordering, of which
37 sessions of 750 trials (27,750 trials) have betas; 15,724 voxels inside the nsdgeneral mask; images at 256
px. It exists to measure time and memory at that scale (benchmarks/nsd_scale.py) without the 300 GB download.

Voxels respond as the simulator's others do (Gaussian pRFs with compressive summation, fmri_data.simulator),
to the images' 10x10 patch contrasts, plus noise. The betas grid is the smallest cube that holds the mask
(the real func1pt8mm grid is 81x104x83 and would only add zeros), stored as int16 HDF5 [trials, z, y, x],
chunked by blocks of trials as the loader reads them. Everything is written session by session and image
block by image block, so memory holds one session's betas and the per-image responses, never all trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import scipy.io

from fmri_data.errors import DataError
from fmri_data.loaders import nsd
from fmri_data.simulator.corpus import image_corpus
from fmri_data.simulator.stimuli import BASE_GRID, area_overlap
from fmri_data.simulator.voxels import responses, sample_population

_IMAGE_BLOCK = 500
_SIGNAL_SCALE = 2.0  # percent signal change of a strongly driven voxel, as NSD's betas are


@dataclass(frozen=True)
class NsdScale:
    """Sizes of the simulated experiment; the defaults are NSD subject 1's."""

    n_images: int = 10_000
    n_shared: int = 1_000
    repeats: int = 3
    n_sessions: int = 37
    n_voxels: int = 15_724
    image_size: int = 256
    noise: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.n_shared < self.n_images:
            raise DataError(f"n_shared={self.n_shared} must lie between 0 and n_images={self.n_images}")
        if self.n_sessions * nsd.TRIALS_PER_SESSION > self.n_images * self.repeats:
            raise DataError(
                f"{self.n_sessions} sessions of {nsd.TRIALS_PER_SESSION} trials need more than "
                f"{self.n_images} images x {self.repeats} repeats"
            )

    @property
    def n_trials(self) -> int:
        return self.n_sessions * nsd.TRIALS_PER_SESSION


def write_nsd_simulation(
    root: str | Path,
    scale: NsdScale | None = None,
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the simulated experiment under `root` (subject 1) for `load_nsd(root, 1)`; returns `root`."""
    scale, root = scale or NsdScale(), Path(root)
    say = progress or (lambda _: None)
    rng = np.random.default_rng(seed)
    paths = nsd.nsd_paths(root, 1)
    for key in ("expdesign", "mask", "stimuli"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
    paths["betas"].mkdir(parents=True, exist_ok=True)

    order = _write_design(paths["expdesign"], scale, rng)  # 0-based image of each trial
    mask = _write_mask(paths["mask"], scale.n_voxels, rng)
    say(f"design and mask written; rendering {scale.n_images} images at {scale.image_size} px")
    contrasts = _write_images(paths["stimuli"], scale, rng)
    population = sample_population(scale.n_voxels, rng)
    signal = responses(population, contrasts, exponent=0.5).astype(np.float32)
    signal = _SIGNAL_SCALE * (signal - signal.mean(0)) / (signal.std(0).mean() + 1e-6)
    for session in range(1, scale.n_sessions + 1):
        trials = order[(session - 1) * nsd.TRIALS_PER_SESSION : session * nsd.TRIALS_PER_SESSION]
        noise = rng.standard_normal((len(trials), scale.n_voxels), dtype=np.float32)
        betas = signal[trials] + scale.noise * _SIGNAL_SCALE * noise
        _write_session(paths["betas"] / f"betas_session{session:02d}.hdf5", betas, mask)
        say(f"session {session}/{scale.n_sessions} written")
    return root


def _write_design(path: Path, scale: NsdScale, rng: np.random.Generator) -> np.ndarray:
    """nsd_expdesign.mat: each image `repeats` times in a shuffled master ordering; subject 1's images are
    NSD ids 0..n_images-1 (the shared ones first, as in NSD's subjectim); returns each trial's image id."""
    positions = rng.permutation(np.repeat(np.arange(scale.n_images), scale.repeats))
    subjectim = np.tile(np.arange(1, scale.n_images + 1), (8, 1))
    scipy.io.savemat(
        path,
        {
            "masterordering": (positions + 1)[None],
            "subjectim": subjectim,
            "sharedix": np.arange(1, scale.n_shared + 1)[None],
        },
    )
    return positions[: scale.n_trials]


def _write_mask(path: Path, n_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """nsdgeneral.nii.gz: `n_voxels` voxels inside the smallest cube that holds them (-1 outside, as NSD)."""
    side = math.ceil(n_voxels ** (1 / 3) * 1.1)
    inside = np.zeros(side**3, dtype=bool)
    inside[rng.choice(side**3, n_voxels, replace=False)] = True
    mask = inside.reshape(side, side, side)
    nib.save(nib.Nifti1Image(np.where(mask, 1, -1).astype(np.int16), np.eye(4)), path)
    return mask


def _write_images(path: Path, scale: NsdScale, rng: np.random.Generator) -> np.ndarray:
    """nsd_stimuli.hdf5 imgBrick [n_images, S, S, 3] uint8, written block by block; returns each image's
    10x10 patch contrasts (what the voxels see)."""
    size = scale.image_size
    overlap = area_overlap(size, BASE_GRID)  # [size, grid]: the share of each pixel row in each patch row
    overlap = overlap / overlap.sum(0)  # columns average the pixels of a patch
    contrasts = np.empty((scale.n_images, BASE_GRID, BASE_GRID), dtype=np.float32)
    with h5py.File(path, "w") as handle:
        brick = handle.create_dataset(
            "imgBrick", (scale.n_images, size, size, 3), dtype=np.uint8, chunks=(1, size, size, 3)
        )
        for start in range(0, scale.n_images, _IMAGE_BLOCK):
            stop = min(start + _IMAGE_BLOCK, scale.n_images)
            images = image_corpus(stop - start, size, rng)
            brick[start:stop] = np.repeat((images * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
            contrasts[start:stop] = np.einsum("nij,ia,jb->nab", images, overlap, overlap)
    return contrasts


def _write_session(path: Path, betas: np.ndarray, mask: np.ndarray) -> None:
    """betas_sessionNN.hdf5: [trials, z, y, x] int16 of percent signal change x 300, NSD's storage."""
    volume = np.zeros((len(betas), *mask.shape[::-1]), dtype=np.int16)
    position = np.zeros(mask.shape, dtype=np.int64)
    position[mask] = np.arange(mask.sum())
    stored = np.clip(np.round(betas * nsd.BETA_SCALE), -32768, 32767).astype(np.int16)
    volume[:, mask.T] = stored[:, position.T[mask.T]]
    with h5py.File(path, "w") as handle:
        handle.create_dataset("betas", data=volume, chunks=(min(50, len(volume)), *volume.shape[1:]))
