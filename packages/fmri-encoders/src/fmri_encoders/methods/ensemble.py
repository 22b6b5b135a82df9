"""The `a+b` methods: the weighted average of several methods' reconstructions, the weights chosen on
validation stimuli held out of the training trials (never on test trials).

Decoders of this field err in different ways (a VAE's posterior mean blurs, a diffusion model's sharpens
what the fMRI leaves open, an encoding model's posterior keeps the stimulus design), so their average is
often better than each (stacking; Breiman 1996); where they err alike, it is not. Each member is fitted on
four fifths of the training stimuli and reconstructs the rest (each of `validation_folds` fifths in turn,
MethodSettings); every weighting on a grid of quarters is scored there (mean pcc + mean SSIM, as every
choice in this project, averaged over the folds); the members with a weight are then
fitted on all training trials. A member keeps its own settings: "member:field" keys of `--choose`
(MethodSettings.for_method) reach it alone, so `cvae` and `ldm` each choose among their own grids inside
their fits.
"""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import combinations_with_replacement, pairwise
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod, create_method
from fmri_data.methods.registry import method_class
from fmri_data.splits import validation_folds, validation_stage
from fmri_eval.metrics import SELECTION_CRITERION, selection_score

WEIGHT_STEPS = 4
"""Weights are multiples of 1/4: fine enough to mix two or three members, coarse enough for 18 validation
stimuli to rank."""


def weight_grid(n_members: int, steps: int = WEIGHT_STEPS) -> list[tuple[float, ...]]:
    """Every way of sharing 1 among `n_members` in multiples of 1/steps (zero weights allowed: the
    validation stimuli may drop a member), the first member's largest share first: ties go to it."""
    grid = [
        tuple((high - low) / steps for low, high in pairwise((0, *cuts, steps)))
        for cuts in combinations_with_replacement(range(steps + 1), n_members - 1)
    ]
    return sorted(grid, reverse=True)


def mix(images: list[np.ndarray], weights: tuple[float, ...]) -> np.ndarray:
    """The weighted average of members' [n, H, W] reconstructions (weights summing to 1 keep [0, 1])."""
    return np.clip(sum(w * image for w, image in zip(weights, images, strict=True)), 0.0, 1.0)


class Ensemble(ReconstructionMethod):
    """Members' reconstructions averaged with weights chosen on validation stimuli; see the module."""

    name = "ensemble"
    members: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: MethodSettings | None = None) -> None:
        super().__init__(settings)
        if len(self.members) < 2:
            raise DataError(
                "an ensemble averages other methods: join two or more method names with '+', "
                "e.g. --method cvae+ldm"
            )

    @classmethod
    def settings_to_choose(cls) -> frozenset[str]:
        """Its members': it passes each member the run's choices (its weights are no setting)."""
        return frozenset().union(*(method_class(name).settings_to_choose() for name in cls.members))

    @classmethod
    def settings_read(cls) -> frozenset[str]:
        """Its members': each takes the run's settings."""
        return frozenset().union(*(method_class(name).settings_read() for name in cls.members))

    def fit(self, train: PairedDataset) -> Ensemble:
        if train.n_stimuli < 2:
            raise DataError(
                f"{self.name}: weighing members needs at least 2 training stimuli, got {train.n_stimuli}"
            )
        started = time.perf_counter()
        grid = weight_grid(len(self.members))
        folds = validation_folds(train.stimulus_id, self.settings.validation_folds, seed=self.settings.seed)
        fold_scores, held_out = [], []
        for index, (inner_idx, held_idx) in enumerate(folds):
            inner, held = train.subset(inner_idx), train.subset(held_idx)
            stage = validation_stage(index)
            validation = [self._member(name, *stage).fit(inner).predict(held.fmri) for name in self.members]
            fold_scores.append([selection_score(held.images, mix(validation, weights)) for weights in grid])
            held_out.append(held)
        scores = np.mean(fold_scores, axis=0).tolist()
        chosen = grid[int(np.argmax(scores))]
        self.validation_seconds_ = time.perf_counter() - started
        self.record_ = {
            "grid": [dict(zip(self.members, weights, strict=True)) for weights in grid],
            "scores": scores,
            "chosen": dict(zip(self.members, chosen, strict=True)),
            "criterion": SELECTION_CRITERION,
            "validation_folds": len(folds),
            "validation_stimuli": sum(held.n_stimuli for held in held_out),
            "validation_trials": sum(held.n_trials for held in held_out),
        } | ({"fold_scores": fold_scores} if len(folds) > 1 else {})
        self.weights_ = {name: w for name, w in zip(self.members, chosen, strict=True) if w > 0}
        self.fitted_ = {name: self._member(name, "final").fit(train) for name in self.weights_}
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        images = [self.fitted_[name].predict(fmri) for name in self.weights_]
        return mix(images, tuple(self.weights_.values()))

    def records(self) -> dict[str, Any]:
        """The weights' grid, validation scores and choice ("validation", as methods record their choice),
        and what each member fitted on all training trials recorded."""
        members = {name: method.records() for name, method in self.fitted_.items()}
        return {"validation": self.record_, "members": {k: v for k, v in members.items() if v}}

    def timings(self) -> dict[str, float]:
        """ "validation": weighing the members, and the final members' own choices of settings."""
        chosen = sum(method.timings().get("validation", 0.0) for method in self.fitted_.values())
        return {"validation": self.validation_seconds_ + chosen}

    def artefacts(self) -> dict[str, Path]:
        return {
            f"{key}-{name}": path
            for name, method in self.fitted_.items()
            for key, path in method.artefacts().items()
        }

    def _member(self, name: str, *stage: str) -> ReconstructionMethod:
        """A fresh member with its own settings, its folder in this one's (work_dir/<ensemble>/<stage>/,
        `stage` validation (validation/fifth-K for the K-th validation fold, K >= 2) or final); base
        models pre-trained once for all, in the run's cache or, without one, the ensemble's folder."""
        settings = self.settings
        if settings.work_dir is not None:
            folder = settings.work_dir / self.name
            settings = replace(
                settings, work_dir=folder.joinpath(*stage, name), cache_dir=settings.cache_dir or folder
            )
        return create_method(name, settings)
