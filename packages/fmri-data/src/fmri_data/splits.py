"""Train/test splits that keep every stimulus wholly on one side.

A split whose test trials show an image that also occurs in training measures memorisation, not decoding
(the shared Miyawaki file's given split does exactly that). Every split built here is checked, and a leaking
one is refused unless the caller says `allow_overlap=True`, which the split then records so reports state it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError


@dataclass(frozen=True)
class Split:
    """One train/test partition of a data set's trials."""

    name: str
    train: np.ndarray
    test: np.ndarray
    fold: int = 0
    allow_overlap: bool = False

    def overlap(self, stimulus_id: np.ndarray) -> np.ndarray:
        """Stimulus ids that occur on both sides."""
        return np.intersect1d(stimulus_id[self.train], stimulus_id[self.test])


def check_split(split: Split, dataset: PairedDataset) -> Split:
    """Refuse empty sides and, unless the split allows it, any stimulus shared by train and test."""
    label = f"{dataset.name}, split {split.name!r}" + (f" fold {split.fold}" if split.name != "given" else "")
    if split.train.size == 0 or split.test.size == 0:
        side = "training" if split.train.size == 0 else "test"
        raise DataError(f"{label}: the {side} side is empty; choose a split that leaves trials on both sides")
    shared = split.overlap(dataset.stimulus_id)
    if shared.size and not split.allow_overlap:
        n_trials = int(np.isin(dataset.stimulus_id[split.test], shared).sum())
        raise DataError(
            f"{label}: {shared.size} test stimuli ({n_trials} of {split.test.size} test trials) "
            "also occur in "
            "training, so it would measure memorisation; use a stimulus-disjoint split (loso or kfold:K) "
            "or pass --allow-overlap (allow_overlap=True) to accept the leak knowingly"
        )
    return split


def given_split(dataset: PairedDataset, *, allow_overlap: bool = False) -> list[Split]:
    """The train/test split the source file came with."""
    if dataset.given_test is None:
        raise DataError(
            f"{dataset.name}: the data came without a given train/test split; use loso or kfold:K"
        )
    split = Split(
        name="given",
        train=np.flatnonzero(~dataset.given_test),
        test=np.flatnonzero(dataset.given_test),
        allow_overlap=allow_overlap,
    )
    return [check_split(split, dataset)]


def group_kfold(groups: np.ndarray, k: int, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) trial indices of K folds over groups: all trials of a group fall in one fold.

    Used for the outer splits (groups = stimuli) and by estimators' inner cross-validation alike.
    """
    groups = np.asarray(groups)
    distinct = np.unique(groups)
    if not 2 <= k <= distinct.size:
        raise DataError(f"{k}-fold splitting needs 2 <= K <= the number of distinct groups ({distinct.size})")
    order = np.random.default_rng(seed).permutation(distinct)
    folds = []
    for held_out in np.array_split(order, k):
        is_test = np.isin(groups, held_out)
        folds.append((np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    return folds


VALIDATION_FOLDS = 5
"""Settings chosen inside a training set are scored on a fifth of its stimuli, or on several in turn."""


def validation_folds(groups: np.ndarray, count: int, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `count` of the training set's stimulus-grouped fifths, each as (inner, held) trial indices
    (the stimuli held out to choose settings on, and the rest to fit on): held out in turn, they score a
    choice on `count` times as many stimuli as one fifth (fewer where the training set has fewer than five
    stimuli). The same fifths for every choice made with `seed` (a method's settings, an ensemble's
    weights), the first being the one fifth that a single fold holds out."""
    if not 1 <= count <= VALIDATION_FOLDS:
        raise DataError(
            f"validation folds must be 1 to {VALIDATION_FOLDS} (fifths of the stimuli), got {count}"
        )
    k = min(VALIDATION_FOLDS, np.unique(groups).size)
    return group_kfold(groups, k, seed=seed)[:count]


def validation_stage(fold: int) -> tuple[str, ...]:
    """The folder parts, under a method's own, of the models fitted for validation fold `fold` (counted from
    0): ("validation",) for the first, the folders a single fold has always used, and ("validation",
    "fifth-K") for the K-th fifth after it."""
    return ("validation", *([f"fifth-{fold + 1}"] if fold else []))


def stimulus_kfold(dataset: PairedDataset, k: int, *, seed: int = 0) -> list[Split]:
    """K folds over distinct stimuli (all trials of a stimulus in one fold), shuffled with `seed`."""
    if not 2 <= k <= dataset.n_stimuli:
        raise DataError(
            f"{dataset.name}: kfold:{k} needs 2 <= K <= the number of distinct stimuli ({dataset.n_stimuli})"
        )
    return [
        check_split(Split(name=f"kfold:{k}", train=train, test=test, fold=i), dataset)
        for i, (train, test) in enumerate(group_kfold(dataset.stimulus_id, k, seed=seed))
    ]


def leave_one_stimulus_out(dataset: PairedDataset) -> list[Split]:
    """One fold per distinct stimulus: its trials are the test set, every other trial trains."""
    stimuli = np.unique(dataset.stimulus_id)
    if stimuli.size < 2:
        raise DataError(f"{dataset.name}: leave-one-stimulus-out needs at least 2 distinct stimuli")
    splits = []
    for i, stimulus in enumerate(stimuli):
        is_test = dataset.stimulus_id == stimulus
        split = Split(name="loso", train=np.flatnonzero(~is_test), test=np.flatnonzero(is_test), fold=i)
        splits.append(check_split(split, dataset))
    return splits


def make_splits(
    dataset: PairedDataset, spec: str, *, seed: int = 0, allow_overlap: bool = False
) -> list[Split]:
    """Parse a split name: `given`, `loso`, or `kfold:K`."""
    if spec == "given":
        return given_split(dataset, allow_overlap=allow_overlap)
    if spec == "loso":
        return leave_one_stimulus_out(dataset)
    if spec.startswith("kfold:"):
        try:
            k = int(spec.removeprefix("kfold:"))
        except ValueError:
            raise DataError(f"split {spec!r}: K must be a whole number, as in kfold:5") from None
        return stimulus_kfold(dataset, k, seed=seed)
    raise DataError(f"unknown split {spec!r}; use given, loso or kfold:K")
