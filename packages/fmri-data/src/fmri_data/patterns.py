"""Voxel patterns for models of the fMRI itself: training and held-out responses, z-scored on training ones.

sim               three simulated subjects with different pRFs and voxel counts, ridge-aligned into the
                  first one's voxel space on training trials only (those trials out of fold); held out: a
                  stimulus-disjoint fifth of the random patches (the training design), and, as a shifted
                  set, the responses to the test figures (shapes and letters, half as bright on average)
an aligned .npz   subject -> [n_timepoints, n_voxels] in one space; it has no stimulus ids, so the last
                  fifth of each subject's time points is held out
anything else     a paired data set (`load_dataset`): its given test trials, else the first of 5 folds
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmri_data.alignment import load_aligned_npz, ridge_align_to_first, save_aligned_npz
from fmri_data.errors import DataError
from fmri_data.io import load_dataset
from fmri_data.preprocessing import VoxelStandardizer
from fmri_data.simulator import simulate_subjects
from fmri_data.splits import group_kfold, make_splits

ALIGNMENT_FOLDS = 5
"""The simulator's later subjects have their training trials aligned out of this many folds, so that the
training patterns carry the alignment error of the held-out ones (alignment.ridge_align_to_first)."""

HELD_OUT_FOLDS = 5
"""The simulator holds out one in this many of its random-patch stimuli, with every trial of each."""


@dataclass(frozen=True)
class VoxelPatterns:
    """Training and held-out patterns [n, voxels], and a sentence saying where they came from; `shifted`:
    held-out patterns of another distribution than training (the simulator's test figures), or None."""

    train: np.ndarray
    test: np.ndarray
    description: str
    shifted: np.ndarray | None = None


def load_patterns(data: str, seed: int = 0, aligned_path: Path | None = None) -> VoxelPatterns:
    """The patterns of `data` (see the module), z-scored with the training patterns' statistics.

    aligned_path: where `sim` writes its aligned subjects; written only once they are ready, so a failed
    preparation leaves no output folder behind.
    """
    if data == "sim":
        return _aligned_simulation(seed, aligned_path)
    if data.endswith(".npz") and not _holds_paired_trials(Path(data)):
        train, test, description = _aligned_file(data)
    else:
        train, test, description = _paired_data_set(data, seed)
    return _standardized(train, test, description)


def _standardized(
    train: np.ndarray, test: np.ndarray, description: str, shifted: np.ndarray | None = None
) -> VoxelPatterns:
    standardizer = VoxelStandardizer().fit(train)
    return VoxelPatterns(
        standardizer.transform(train),
        standardizer.transform(test),
        description,
        None if shifted is None else standardizer.transform(shifted),
    )


def _holds_paired_trials(path: Path) -> bool:
    """Whether an .npz is a paired data set (fmri + images) rather than aligned subjects' responses."""
    if not path.is_file():
        raise DataError(f"{path}: no such data file; check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return "fmri" in archive.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz ({error}); re-save it") from None


def _paired_data_set(data: str, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    dataset = load_dataset(data)
    split = "given" if dataset.given_test is not None and data != "miyawaki" else "kfold:5"
    fold = make_splits(dataset, split, seed=seed)[0]
    train, test = dataset.fmri[fold.train], dataset.fmri[fold.test]
    return (
        train,
        test,
        f"{dataset.name}: {len(train)} training and {len(test)} held-out trials ({split}, first fold)",
    )


def _aligned_simulation(seed: int, aligned_path: Path | None) -> VoxelPatterns:
    """Held out: a stimulus fold of the random patches; shifted: the test figures. Aligned on the rest."""
    subjects = simulate_subjects(3, seed=seed)
    reference_name, reference = next(iter(subjects.items()))
    patches = np.flatnonzero(~reference.given_test)
    fit, held = group_kfold(reference.stimulus_id[patches], HELD_OUT_FOLDS, seed=seed)[0]
    is_train = np.isin(np.arange(len(reference.given_test)), patches[fit])
    is_held = np.isin(np.arange(len(reference.given_test)), patches[held])
    responses = {name: subject.fmri for name, subject in subjects.items()}
    aligned = ridge_align_to_first(responses, is_train, folds=ALIGNMENT_FOLDS, groups=reference.stimulus_id)
    if aligned_path is not None:
        aligned_path.parent.mkdir(parents=True, exist_ok=True)
        save_aligned_npz(aligned_path, aligned)
    train, test, shifted = (
        np.concatenate([a[rows] for a in aligned.values()])
        for rows in (is_train, is_held, reference.given_test)
    )
    description = (
        f"3 simulated subjects ({', '.join(str(s.n_voxels) for s in subjects.values())} voxels) "
        f"ridge-aligned to {reference_name} on training trials (the training trials themselves out of "
        f"{ALIGNMENT_FOLDS} folds); {len(train)} training and {len(test)} held-out patterns (a stimulus-"
        f"disjoint 1/{HELD_OUT_FOLDS} of the random patches), and {len(shifted)} shifted ones (the test "
        "figures, unlike any training image)"
    )
    return _standardized(train, test, description, shifted)


def _aligned_file(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    responses = load_aligned_npz(path)
    widths = {a.shape[1] for a in responses.values()}
    if len(widths) != 1:
        raise DataError(f"{path}: subjects have {sorted(widths)} voxels; align them to one space first")
    cut = {name: int(len(a) * 0.8) for name, a in responses.items()}
    train = np.concatenate([a[: cut[n]] for n, a in responses.items()])
    test = np.concatenate([a[cut[n] :] for n, a in responses.items()])
    return (
        train,
        test,
        f"{path}: {len(responses)} subjects; the last fifth of each one's time points held out",
    )
