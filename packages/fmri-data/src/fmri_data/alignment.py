"""Functional alignment of subjects into a shared space, learned from responses to shared stimuli.

Subjects differ in voxel count and in where each voxel's receptive field lies, but respond to the same
stimuli; an aligner fitted on a subject's responses to training stimuli maps any later response of that
subject (held-out stimuli included) into the reference space, where one decoder serves every subject.

- `RidgeAlignment`: a ridge map from the subject's voxels to the reference's (any voxel counts); its alpha
  is chosen by generalised cross-validation on the training responses.
- `ProcrustesAlignment`: both sides reduced to k principal components (fitted on training responses), then
  the orthogonal rotation that best maps the subject's components onto the reference's.
- `hyperalign`: iterative Procrustes of several subjects to a common template (Haxby et al. 2011).
- `ridge_align_to_first`: several subjects' responses to the same trials, z-scored and ridge-mapped into the
  first subject's space (the training rows optionally out of fold, so that they carry the held-out rows'
  alignment error).

Fit on training trials only; every aligner saves to and loads from a pickle-free `.npz`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.linalg import orthogonal_procrustes

from fmri_data.errors import DataError
from fmri_data.preprocessing import VoxelStandardizer
from fmri_data.splits import group_kfold

DEFAULT_ALPHAS = tuple(10.0**k for k in range(-2, 8))


class _Aligner:
    """fit(source, reference) on responses to the same stimuli (rows paired); transform maps source."""

    kind: ClassVar[str]
    _arrays: ClassVar[tuple[str, ...]]

    def transform(self, source: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays = {name: getattr(self, name) for name in self._arrays}
        np.savez(path, kind=np.array(self.kind), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> _Aligner:
        """Load any aligner saved by `save` (the file names its kind)."""
        with np.load(path, allow_pickle=False) as data:
            kind = str(data["kind"])
            aligner_class = {c.kind: c for c in (RidgeAlignment, ProcrustesAlignment)}.get(kind)
            if aligner_class is None:
                raise DataError(f"{path}: unknown aligner kind {kind!r}")
            aligner = aligner_class.__new__(aligner_class)
            for name in aligner_class._arrays:
                setattr(aligner, name, data[name])
        return aligner


def _paired(source: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    source, reference = np.asarray(source, np.float64), np.asarray(reference, np.float64)
    if source.ndim != 2 or reference.ndim != 2 or len(source) != len(reference):
        raise DataError(
            f"alignment needs [n, voxels] responses of both subjects to the same n stimuli, got "
            f"{source.shape} and {reference.shape}"
        )
    if len(source) < 3:
        raise DataError(f"alignment needs at least 3 shared stimuli, got {len(source)}")
    return source, reference


class RidgeAlignment(_Aligner):
    """reference ~ (source - mean) @ weights + reference mean, one alpha chosen by GCV."""

    kind = "ridge"
    _arrays = ("weights", "source_mean", "reference_mean", "alpha")

    def __init__(self, alphas: Sequence[float] = DEFAULT_ALPHAS) -> None:
        self.alphas = tuple(alphas)

    def fit(self, source: np.ndarray, reference: np.ndarray) -> RidgeAlignment:
        source, reference = _paired(source, reference)
        self.source_mean, self.reference_mean = source.mean(0), reference.mean(0)
        x, y = source - self.source_mean, reference - self.reference_mean
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        uty = u.T @ y
        n = len(x)
        best = None
        for alpha in self.alphas:
            shrink = s**2 / (s**2 + alpha)
            residual = y - u @ (shrink[:, None] * uty)
            gcv = (residual**2).sum() / (n * (1 - shrink.sum() / n) ** 2)
            if best is None or gcv < best[0]:
                best = (gcv, alpha)
        self.alpha = np.array(best[1])
        self.weights = vt.T @ ((s / (s**2 + self.alpha))[:, None] * uty)
        return self

    def transform(self, source: np.ndarray) -> np.ndarray:
        return (np.asarray(source, np.float64) - self.source_mean) @ self.weights + self.reference_mean


class ProcrustesAlignment(_Aligner):
    """Rotate the subject's k principal components onto the reference's; transform gives reference voxels."""

    kind = "procrustes"
    _arrays = ("source_mean", "source_basis", "rotation", "reference_mean", "reference_basis")

    def __init__(self, n_components: int = 50) -> None:
        self.n_components = n_components

    def fit(self, source: np.ndarray, reference: np.ndarray) -> ProcrustesAlignment:
        source, reference = _paired(source, reference)
        k = min(self.n_components, len(source) - 1, source.shape[1], reference.shape[1])
        self.source_mean, self.source_basis = _principal_axes(source, k)
        self.reference_mean, self.reference_basis = _principal_axes(reference, k)
        a = (source - self.source_mean) @ self.source_basis
        b = (reference - self.reference_mean) @ self.reference_basis
        self.rotation, _ = orthogonal_procrustes(a, b)
        return self

    def transform(self, source: np.ndarray) -> np.ndarray:
        components = (np.asarray(source, np.float64) - self.source_mean) @ self.source_basis @ self.rotation
        return components @ self.reference_basis.T + self.reference_mean


def _principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the top-k principal axes [voxels, k] of x."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k].T


def hyperalign(
    responses: Mapping[str, np.ndarray], n_components: int = 50, n_iter: int = 3
) -> tuple[dict[str, ProcrustesAlignment], np.ndarray]:
    """Align every subject to a common template refined over `n_iter` rounds.

    responses: subject -> [n, voxels] to the same n training stimuli. Returns the aligners (into the
    template's voxel space, which is the first subject's) and the template [n, first subject's voxels].
    """
    names = list(responses)
    if len(names) < 2:
        raise DataError(f"hyperalignment needs at least 2 subjects, got {len(names)}")
    template = np.asarray(responses[names[0]], np.float64)
    for _ in range(n_iter):
        aligners = {name: ProcrustesAlignment(n_components).fit(responses[name], template) for name in names}
        template = np.mean([aligners[name].transform(responses[name]) for name in names], axis=0)
    return aligners, template


def ridge_align_to_first(
    responses: Mapping[str, np.ndarray],
    is_train: np.ndarray,
    *,
    folds: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every subject's responses [n, own voxels] to the same n trials, in the first subject's voxel space.

    Each subject is z-scored, and each later one ridge-mapped onto the first, using the `is_train` rows
    only: the held-out rows are aligned by maps that never saw them. folds: above 1, the training rows are
    aligned that way too, each by the map of the other folds of the training rows (grouped by `groups`,
    e.g. stimulus ids; else row by row), so that they carry the alignment error the held-out rows carry: a
    map fitted on a row reproduces the first subject's response to it, and a model of the aligned patterns
    would learn from rows unlike those it is tested on.
    """
    if folds == 1:
        raise DataError("folds: 0 aligns the training rows in sample, 2 or more out of fold; got 1")
    scaled = {
        name: VoxelStandardizer().fit(fmri[is_train]).transform(fmri) for name, fmri in responses.items()
    }
    reference_name, reference = next(iter(scaled.items()))
    rows = np.flatnonzero(is_train)
    row_groups = rows if groups is None else np.asarray(groups)[rows]
    aligned = {reference_name: reference}
    for name, fmri in list(scaled.items())[1:]:
        aligned[name] = RidgeAlignment().fit(fmri[rows], reference[rows]).transform(fmri)
        if folds > 1:
            for fit, held in group_kfold(row_groups, folds):
                mapping = RidgeAlignment().fit(fmri[rows[fit]], reference[rows[fit]])
                aligned[name][rows[held]] = mapping.transform(fmri[rows[held]])
    return aligned


def save_aligned_npz(path: str | Path, responses: Mapping[str, np.ndarray]) -> Path:
    """Write subject -> [n_timepoints, n_voxels] arrays to one `.npz`, one key per subject."""
    if not responses:
        raise DataError("no subjects to save")
    for name, array in responses.items():
        if np.ndim(array) != 2:
            raise DataError(f"subject {name!r}: expected [n_timepoints, n_voxels], got {np.shape(array)}")
    path = Path(path)
    np.savez(path, **{name: np.asarray(array, np.float32) for name, array in responses.items()})
    return path


def load_aligned_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read an `.npz` of subject -> [n_timepoints, n_voxels] arrays (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            responses = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz of subject arrays ({error})") from error
    for name, array in responses.items():
        if array.ndim != 2:
            raise DataError(f"{path}: subject {name!r} is {array.shape}, not [n_timepoints, n_voxels]")
    return responses
