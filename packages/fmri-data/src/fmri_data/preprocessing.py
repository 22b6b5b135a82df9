"""Preprocessing fitted on training trials only, then applied unchanged to test trials.

Statistics computed on test trials (their mean, their variance, which voxels respond to them) leak the test
set into the model; every transform here therefore has `fit(train)` and `transform(any)` kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from fmri_data.dataset import VARIES_WITH_REPEAT, PairedDataset
from fmri_data.errors import DataError

RepeatAveraging = Literal["none", "train", "test", "both"]
VoxelScore = Literal["auto", "variance", "f_stat"]


class VoxelStandardizer:
    """Z-score each voxel with the training trials' mean and standard deviation."""

    def fit(self, fmri: np.ndarray) -> VoxelStandardizer:
        self.mean_ = fmri.mean(axis=0)
        std = fmri.std(axis=0)
        # A voxel that is constant in training carries no information; scale 1 keeps it finite (all zeros).
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, fmri: np.ndarray) -> np.ndarray:
        return ((fmri - self.mean_) / self.scale_).astype(np.float32)


class VoxelSelector:
    """Keep the `k` voxels that score highest on the training trials.

    score="variance": training variance (useful on raw, unstandardised data).
    score="f_stat": one-way ANOVA F of the voxel across training stimuli (between-stimulus over
    within-stimulus variance); needs repeated stimuli in training and favours voxels that respond reliably.
    score="auto": f_stat where training stimuli repeat, else variance (`score_used_` says which).
    """

    def __init__(self, k: int, score: VoxelScore = "auto") -> None:
        if k < 1:
            raise DataError(f"voxel selection: k must be at least 1, got {k}")
        self.k = k
        self.score = score

    def fit(self, fmri: np.ndarray, stimulus_id: np.ndarray) -> VoxelSelector:
        if self.k > fmri.shape[1]:
            raise DataError(f"voxel selection: k={self.k} exceeds the {fmri.shape[1]} voxels available")
        self.score_used_ = self.score
        if self.score == "auto":
            repeats = np.unique(stimulus_id).size < len(stimulus_id)
            self.score_used_ = "f_stat" if repeats else "variance"
        if self.score_used_ == "variance":
            scores = fmri.var(axis=0)
        elif self.score_used_ == "f_stat":
            scores = _anova_f(fmri, stimulus_id)
        else:
            raise DataError(f"voxel selection: unknown score {self.score!r}; use auto, variance or f_stat")
        self.scores_ = scores
        self.voxels_ = np.sort(np.argsort(scores)[::-1][: self.k])
        return self

    def transform(self, fmri: np.ndarray) -> np.ndarray:
        return fmri[:, self.voxels_]


def _anova_f(fmri: np.ndarray, stimulus_id: np.ndarray) -> np.ndarray:
    stimuli, group = np.unique(stimulus_id, return_inverse=True)
    n, n_groups = len(fmri), len(stimuli)
    if n_groups == n:
        raise DataError(
            "voxel selection by f_stat needs repeated training stimuli; none repeat here, "
            "use score='variance'"
        )
    counts = np.bincount(group).astype(np.float64)
    sums = np.zeros((n_groups, fmri.shape[1]))
    np.add.at(sums, group, fmri)
    group_means = sums / counts[:, None]
    grand = fmri.mean(axis=0)
    between = (counts[:, None] * (group_means - grand) ** 2).sum(axis=0) / (n_groups - 1)
    within = ((fmri - group_means[group]) ** 2).sum(axis=0) / (n - n_groups)
    return between / np.maximum(within, np.finfo(np.float64).tiny)


def repeat_groups(dataset: PairedDataset) -> tuple[np.ndarray, np.ndarray]:
    """Group the trials by (subject, stimulus), groups in order of first occurrence.

    Returns (first trial of each group, group index of each trial).
    """
    subject = dataset.subject if dataset.subject is not None else np.full(dataset.n_trials, "")
    keys = np.array([f"{s}\x00{i}" for s, i in zip(subject, dataset.stimulus_id, strict=True)])
    _, first, group = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[group]


def average_repeats(dataset: PairedDataset) -> PairedDataset:
    """One trial per (subject, stimulus): the mean of its repeated trials' voxels.

    Averaging raises SNR by about sqrt(repeats) and is common in the literature, but it changes what is
    measured, so callers must choose it explicitly and reports must state it.
    """
    first, group = repeat_groups(dataset)
    sums = np.zeros((first.size, dataset.n_voxels), dtype=np.float64)
    np.add.at(sums, group, dataset.fmri)
    counts = np.bincount(group, minlength=first.size)
    averaged = dataset.subset(first)
    averaged.fmri = (sums / counts[:, None]).astype(np.float32)
    for name in VARIES_WITH_REPEAT:  # an average spans the runs its repeats were in
        setattr(averaged, name, None)
    averaged.metadata["preprocessing"] = [
        *dataset.metadata.get("preprocessing", []),
        f"averaged repeats: {dataset.n_trials} trials -> {first.size}",
    ]
    return averaged


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing a run applies inside every fold: fitted on the fold's training trials."""

    zscore: bool = True
    n_voxels: int | None = None
    voxel_score: VoxelScore = "auto"
    average_repeats: RepeatAveraging = "none"

    def describe(self) -> list[str]:
        notes = []
        if self.zscore:
            notes.append("voxels z-scored with training-fold statistics")
        if self.n_voxels is not None:
            score = (
                "f_stat (variance where training stimuli do not repeat)"
                if self.voxel_score == "auto"
                else (self.voxel_score)
            )
            notes.append(f"{self.n_voxels} voxels selected by {score} on training-fold trials")
        if self.average_repeats != "none":
            notes.append(f"repeated trials of a stimulus averaged ({self.average_repeats})")
        return notes

    def apply(self, train: PairedDataset, test: PairedDataset) -> tuple[PairedDataset, PairedDataset]:
        """Fit on `train`, transform both; averaging happens first so statistics see averaged trials."""
        if self.average_repeats in ("train", "both"):
            train = average_repeats(train)
        if self.average_repeats in ("test", "both"):
            test = average_repeats(test)
        if self.n_voxels is not None:
            selector = VoxelSelector(self.n_voxels, self.voxel_score).fit(train.fmri, train.stimulus_id)
            train = train.select_voxels(selector.voxels_)
            test = test.select_voxels(selector.voxels_)
        if self.zscore:
            scaler = VoxelStandardizer().fit(train.fmri)
            train = train.with_fmri(scaler.transform(train.fmri))
            test = test.with_fmri(scaler.transform(test.fmri))
        return train, test
