"""Sampling settings chosen inside the training set, never on test trials.

A diffusion method's img2img strength, likelihood weight, guidance or step count changes its output a lot,
and the test trials must not pick them. So `choose_on_validation` holds out a fifth of the training
*stimuli* (all their trials), fits a probe copy of the method on the rest, reconstructs the held-out trials
under every setting of the grid and keeps the one with the best mean pcc + mean SSIM. The method is then
fitted on all training trials with that setting. The grid, every score and the choice are returned for
metrics.json and report.md.
"""

from __future__ import annotations

from dataclasses import fields, replace
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.splits import group_kfold
from fmri_eval.metrics import pcc, ssim

if TYPE_CHECKING:
    from fmri_diffusion.methods.base import DiffusionMethod

VALIDATION_FOLDS = 5
"""A fifth of the training stimuli is held out for validation."""
CRITERION = "mean pcc + mean ssim over the validation trials"


def choice_grid(method: DiffusionMethod) -> list[dict[str, Any]]:
    """Every combination of the run's `choices` that the method's config has fields for and accepts (e.g.
    residual decoding needs an img2img start: no point pairs it with strength 1)."""
    names = {f.name for f in fields(method.config)}
    options = {name: tuple(values) for name, values in method.settings.choices.items() if name in names}
    if not options:
        return []
    grid = [dict(zip(options, values, strict=True)) for values in product(*options.values())]
    valid = [point for point in grid if _accepts(method.config, point)]
    if not valid:
        raise DataError(f"{method.name}: no combination of the settings to choose from is valid; {grid}")
    return valid


def _accepts(config: Any, point: dict[str, Any]) -> bool:
    try:
        replace(config, **point)
    except DataError:
        return False
    return True


def choose_on_validation(method: DiffusionMethod, train: PairedDataset) -> dict[str, Any]:
    """Fit a probe on 4/5 of the training stimuli, score every grid point on the rest; return the record
    {"grid", "scores", "chosen", "criterion", "validation_stimuli", "validation_trials"}."""
    grid = choice_grid(method)
    if not grid:
        return {"grid": [], "scores": [], "chosen": {}, "criterion": CRITERION}
    if train.n_stimuli < 2:
        raise DataError(f"{method.name}: choosing settings needs at least 2 training stimuli, got 1")
    inner_idx, held_idx = group_kfold(
        train.stimulus_id, min(VALIDATION_FOLDS, train.n_stimuli), seed=method.settings.seed
    )[0]
    inner, held = train.subset(inner_idx), train.subset(held_idx)
    settings = method.settings
    probe = type(method)(
        replace(
            settings,
            work_dir=method.stage_dir("validation"),
            cache_dir=settings.cache_dir or settings.work_dir,  # the base model is shared, not re-trained
            choices={},
        )
    )
    probe.config = replace(method.config, **_widest(grid))
    probe.fit(inner)
    scores = []
    for point in grid:
        probe.config = replace(method.config, **point)
        images = probe.predict(held.fmri)
        scores.append(float(np.mean(pcc(held.images, images)) + np.mean(ssim(held.images, images))))
    return {
        "grid": grid,
        "scores": scores,
        "chosen": grid[int(np.argmax(scores))],
        "criterion": CRITERION,
        "validation_stimuli": held.n_stimuli,
        "validation_trials": held.n_trials,
    }


def _widest(grid: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe is fitted once for the whole grid, so it fits what any point needs: the encoding model
    whenever some point guides by the likelihood, the caption guide whenever some point mixes captions in,
    the pixel ridge whenever some point decodes residually."""
    widest: dict[str, Any] = {}
    for setting in ("likelihood_weight", "mixing"):  # mixing > 0 fits the caption guide
        values = [point[setting] for point in grid if point.get(setting) is not None]
        if values:
            widest[setting] = max(values)
    residual = next((point for point in grid if point.get("decode") == "residual"), None)
    if residual is not None:  # with its strength, should the grid hold one: residual needs img2img
        widest |= {key: residual[key] for key in ("decode", "strength") if key in residual}
    return widest
