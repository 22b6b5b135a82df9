"""Sampling settings chosen inside the training set, never on test trials.

A diffusion method's img2img strength, likelihood weight, guidance or step count changes its output a lot,
and the test trials must not pick them. So `choose_on_validation` holds out a fifth of the training
*stimuli* (all their trials), fits a probe copy of the method on the rest (one per value of the settings the
fit itself depends on, such as a network's width), reconstructs the held-out trials under every setting of
the grid and keeps the one with the best mean pcc + mean SSIM; under MethodSettings.validation_folds above 1
it does so for that many fifths in turn, each with probes of its own, and keeps the best mean over them. The
readout (`readout=pixels,patches`, see fmri_data.readout) is chosen with them, without sampling again: each
validation stimulus is read out by a readout fitted on the other validation stimuli' reconstructions of its
fifth (so the score never rewards fitting the images it scores), and the one kept is fitted on every fifth's.
So is `sample_weight` (how the encoding model's likelihood weighs the samples): each of its values weighs the
same samples. The method is then fitted on all training trials with that setting and keeps the chosen
readout. The grid, every score and the choice are returned for metrics.json and report.md, with (one fifth
only) the probe that scored the choice: under `refit_steps` below 1 the final fit of `cvae`, `ddpm` and `ldm`
starts from its weights (methods.base).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri_data.corpora import detect_patch_grid
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.readout import NO_DESIGN, ONE_VALUE, READOUTS, PatchReadout, patch_values
from fmri_data.splits import validation_folds, validation_stage
from fmri_eval.metrics import SELECTION_CRITERION, selection_score

if TYPE_CHECKING:
    from fmri_diffusion.methods.base import DiffusionMethod


def choice_grid(method: DiffusionMethod) -> list[dict[str, Any]]:
    """Every combination of the run's `choices` that the method's config has fields for and accepts (e.g.
    residual decoding needs an img2img start: no point pairs it with strength 1)."""
    names = {f.name for f in fields(method.config)}
    options = {
        name: tuple(_typed(method.config, name, value) for value in values)
        for name, values in method.settings.choices.items()
        if name in names
    }
    if not options:
        return []
    grid = [dict(zip(options, values, strict=True)) for values in product(*options.values())]
    valid = [point for point in grid if _accepts(method.config, point)]
    if not valid:
        raise DataError(f"{method.name}: no combination of the settings to choose from is valid; {grid}")
    return valid


def _typed(config: Any, name: str, value: Any) -> Any:
    """A value as its field's type: the command line reads numbers as floats, where a step count or a
    network's size must be a whole number."""
    default = getattr(config, name)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"{name} takes whole numbers, got {value}; choose among whole numbers")
        return int(value)
    return value


def _accepts(config: Any, point: dict[str, Any]) -> bool:
    try:
        replace(config, **point)
    except DataError:
        return False
    return True


def requested_readouts(method: DiffusionMethod) -> tuple[str, ...]:
    """The readouts `choices["readout"]` names, checked."""
    names = tuple(method.settings.choices.get("readout", ()))
    if unknown := set(names) - set(READOUTS):
        raise DataError(f"readout takes {', '.join(READOUTS)}, got {', '.join(sorted(unknown))}")
    return names


def usable_readouts(
    names: tuple[str, ...], train: PairedDataset, held: PairedDataset
) -> tuple[tuple[str, ...], list[str]]:
    """The readouts to weigh (none where only pixels remain) and a note for each one the data rule out:
    patches need a K x K binary patch design, and on and off patches among the validation stimuli left
    when any one of them is held out."""
    reason = None
    if "patches" in names:
        grid = None if train.is_colour else detect_patch_grid(train.images)  # binary patches are grayscale
        if grid is None:
            reason = NO_DESIGN
        else:
            on = patch_values(held.images, grid) > 0.5
            rests = [on[held.stimulus_id != stimulus] for stimulus in np.unique(held.stimulus_id)]
            reason = None if all(rest.any() and not rest.all() for rest in rests) else ONE_VALUE
    if reason is not None:
        names = tuple(name for name in names if name != "patches")
    return (() if names in ((), ("pixels",)) else names), ([] if reason is None else [f"patches: {reason}"])


def choose_on_validation(
    method: DiffusionMethod, train: PairedDataset, *, keep_probe: bool = False
) -> tuple[dict[str, Any], DiffusionMethod | None]:
    """Fit probes on 4/5 of the training stimuli, score every grid point (setting x readout) on the rest,
    once per validation fold (MethodSettings.validation_folds: that many fifths held out in turn), and
    keep the best mean score; return the record {"grid", "scores", "chosen", "criterion", "validation_folds",
    "validation_stimuli", "validation_trials"}, with "fold_scores" under several folds, "readout" (the
    chosen one's parameters, fitted on every fold's validation reconstructions, or None) and "left_out"
    (readouts the data rule out) when readouts are asked for, and, under `keep_probe` (one fold only), the
    probe fitted for the chosen point (else None: each probe is freed in turn)."""
    grid = choice_grid(method)
    names = requested_readouts(method)
    if not grid and not names:
        return {"grid": [], "scores": [], "chosen": {}, "criterion": SELECTION_CRITERION}, None
    if train.n_stimuli < 2:
        raise DataError(f"{method.name}: choosing settings needs at least 2 training stimuli, got 1")
    folds = validation_splits(train, method.settings.seed, method.settings.validation_folds)
    if keep_probe and len(folds) > 1:
        raise DataError(
            f"{method.name}: a final fit starts from the probe of one validation fold, not several"
        )
    readouts, left_out = usable_in_every_fold(names, folds)
    if not grid and not readouts:  # nothing left to choose: no probe is trained
        return {
            "grid": [],
            "scores": [],
            "chosen": {},
            "criterion": SELECTION_CRITERION,
            "left_out": left_out,
        }, None
    scored = [
        _score_fold(method, grid or [{}], readouts, fold, index, keep_probe=keep_probe)
        for index, fold in enumerate(folds)
    ]
    points = scored[0].points
    if any(fold.points != points for fold in scored):
        raise RuntimeError(f"{method.name}: the validation folds scored different grids")
    scores = np.mean([fold.scores for fold in scored], axis=0).tolist()
    best = int(np.argmax(scores))
    record = {
        "grid": points,
        "scores": scores,
        "chosen": points[best],
        "criterion": SELECTION_CRITERION,
        "validation_folds": len(folds),
        "validation_stimuli": sum(held.n_stimuli for _, held in folds),
        "validation_trials": sum(held.n_trials for _, held in folds),
    }
    if len(folds) > 1:
        record["fold_scores"] = [fold.scores for fold in scored]
    if names:
        readout = None
        if points[best].get("readout") == "patches":
            readout = PatchReadout.fit(
                folds[0][0].images if len(folds) == 1 else train.images,  # the probes' training images
                np.concatenate([fold.samples[best] for fold in scored]),
                np.concatenate([held.images for _, held in folds]),
            ).to_dict()
        record |= {"readout": readout, "left_out": left_out}
    return record, scored[0].probe


@dataclass
class _FoldScores:
    """One validation fold's score of every grid point, each point's reconstructions before any readout
    (kept where a patch readout may be fitted on them, else None) and, under keep_probe, the best point's
    probe."""

    points: list[dict[str, Any]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    samples: list[np.ndarray | None] = field(default_factory=list)
    probe: DiffusionMethod | None = None


def _score_fold(
    method: DiffusionMethod,
    grid: list[dict[str, Any]],
    readouts: tuple[str, ...],
    fold: tuple[PairedDataset, PairedDataset],
    index: int,
    *,
    keep_probe: bool,
) -> _FoldScores:
    """Fit the fold's probes (one per group of settings the fit depends on, in their own folders) on its
    inner stimuli and score every grid point x readout on its held-out ones."""
    inner, held = fold
    result = _FoldScores()
    for trained, settings in _by_training(method, grid):
        probe = _fitted_probe(method, trained, settings, inner, index)
        for setting, sampled in _validation_rows(probe, method, settings, held.fmri):
            for name in readouts or (None,):
                images = sampled if name in (None, "pixels") else validation_patches(sampled, inner, held)[0]
                score = selection_score(held.images, images)
                if keep_probe and (not result.scores or score > max(result.scores)):
                    result.probe = probe
                result.points.append(setting if name is None else setting | {"readout": name})
                result.scores.append(score)
                result.samples.append(sampled if "patches" in readouts else None)
    return result


def usable_in_every_fold(
    names: tuple[str, ...], folds: list[tuple[PairedDataset, PairedDataset]]
) -> tuple[tuple[str, ...], list[str]]:
    """usable_readouts over several validation folds: a readout that the data of any fold rule out is left
    out of all of them, with its note."""
    return max((usable_readouts(names, *fold) for fold in folds), key=lambda usable: len(usable[1]))


def validation_split(train: PairedDataset, seed: int) -> tuple[PairedDataset, PairedDataset]:
    """(inner, held): the training trials the probe fits on and those of the stimuli held out to score it."""
    return validation_splits(train, seed, 1)[0]


def validation_splits(
    train: PairedDataset, seed: int, count: int
) -> list[tuple[PairedDataset, PairedDataset]]:
    """(inner, held) of each of the first `count` validation folds; the first is validation_split's."""
    return [
        (train.subset(inner), train.subset(held))
        for inner, held in validation_folds(train.stimulus_id, count, seed=seed)
    ]


def _by_training(
    method: DiffusionMethod, grid: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The grid's points grouped by the values of every setting the fit depends on (all but the method's
    sampling settings), in grid order: one probe is fitted per group and samples every point of it."""
    groups: dict[tuple, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for point in grid:
        trained = {key: value for key, value in point.items() if key not in method.sampling_settings}
        groups.setdefault(tuple(sorted(trained.items())), (trained, []))[1].append(point)
    return list(groups.values())


def _validation_rows(
    probe: DiffusionMethod, method: DiffusionMethod, settings: list[dict[str, Any]], fmri: np.ndarray
) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Each setting with the probe's reconstructions of `fmri` under it. Settings that differ only in how
    the samples are weighed (method.posterior_settings) share one set of samples: weighing them again costs
    nothing, sampling again would cost a whole pass."""
    shared: dict[tuple, list[dict[str, Any]]] = {}
    for setting in settings:
        drawn = {key: value for key, value in setting.items() if key not in method.posterior_settings}
        shared.setdefault(tuple(sorted(drawn.items())), []).append(setting)
    for group in shared.values():
        probe.config = replace(method.config, **group[0])
        if len(group) == 1:
            yield group[0], probe.predict(fmri)
            continue
        samples = probe.sample(fmri, probe.config.n_samples)
        for setting in group:
            probe.config = replace(method.config, **setting)
            yield setting, probe.rows_from(samples, fmri)[probe.name]


def _fitted_probe(
    method: DiffusionMethod,
    trained: dict[str, Any],
    grid: list[dict[str, Any]],
    inner: PairedDataset,
    fold: int = 0,
) -> DiffusionMethod:
    """A copy of the method with `trained` settings, fitted on the inner stimuli of validation fold `fold`
    for every point of `grid`, its checkpoints apart from those of any other group's or fold's probe (the
    first fold's in the folders a single fold has always used, the others' in validation/fifth-2/ on)."""
    stage = (*validation_stage(fold), *_folders_for(trained))
    settings = method.settings
    probe = type(method)(
        replace(
            settings,
            work_dir=method.stage_dir(*stage),
            cache_dir=settings.cache_dir or settings.work_dir,  # the base model is shared, not re-trained
            choices={},
        )
    )
    probe.config = replace(method.config, **trained, **_widest(grid))
    probe.step_fraction = settings.probe_steps
    probe.fit(inner)
    return probe


def final_fit_stage(method: DiffusionMethod, chosen: dict[str, Any]) -> tuple[str, ...]:
    """The final fit's folder under the method's: ("final", "<setting>-<value>", ...) for each setting it
    fits by that the grid offers several values of, else () (the method's own folder, as without a grid).

    A resumed run may sample with more samples or steps, and that may move its choice to another value of
    such a setting: that value's final fit then trains in its own folder (or resumes there), never from the
    checkpoints of a network fitted with another size."""
    offered = {name: set(values) for name, values in method.settings.choices.items()}
    fitted_by = {
        name: value
        for name, value in chosen.items()
        if name not in method.predict_time_settings() and len(offered.get(name, ())) > 1
    }
    return ("final", *_folders_for(fitted_by)) if fitted_by else ()


def _folders_for(settings: dict[str, Any]) -> tuple[str, ...]:
    """One folder name per setting, "<setting>-<value>" in the settings' name order: a probe's and a final
    fit's folders name the same values alike."""
    return tuple(f"{name}-{value}" for name, value in sorted(settings.items()))


def validation_patches(
    sampled: np.ndarray, inner: PairedDataset, held: PairedDataset
) -> tuple[np.ndarray, PatchReadout]:
    """The validation reconstructions read out stimulus by stimulus, each by a readout fitted on the other
    validation stimuli, and the readout fitted on all of them (the one a chosen point keeps)."""
    images = np.empty_like(sampled)
    for stimulus in np.unique(held.stimulus_id):
        scored = held.stimulus_id == stimulus
        others = PatchReadout.fit(inner.images, sampled[~scored], held.images[~scored])
        images[scored] = others(sampled[scored])
    return images, PatchReadout.fit(inner.images, sampled, held.images)


def _widest(grid: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe is fitted once for the whole grid, so it fits what any point needs: the encoding model
    whenever some point guides by the likelihood or weighs by it, the caption guide whenever some point
    mixes captions in, the residual decoding's start image (the pixel ridge, or an sd-* route's
    inverse-retinotopy start) whenever some point decodes residually."""
    widest: dict[str, Any] = {}
    for setting in ("likelihood_weight", "sample_weight", "mixing"):  # mixing > 0 fits the caption guide
        values = [point[setting] for point in grid if point.get(setting) is not None]
        if values:
            widest[setting] = max(values)
    residual = next((point for point in grid if point.get("decode") == "residual"), None)
    if residual is not None:  # with its strength, should the grid hold one: residual needs img2img
        widest |= {key: residual[key] for key in ("decode", "strength") if key in residual}
    return widest
