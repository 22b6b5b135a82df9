"""A simulated retinotopic fMRI experiment in the design of Miyawaki et al. (2008).

Training trials show random binary patch patterns, test trials show figures never seen in training (shapes
and the letters of "neuron"), and voxels respond through Gaussian pRFs with compressive summation plus noise.
It needs nothing downloaded, takes a fraction of a second, and is decodable by a linear model but not
perfectly (the compressive nonlinearity, large peripheral pRFs, noise and run drift all cost accuracy), so
it is the default data set of every app.

Labels: 0 for random patterns, i >= 1 for the i-th figure of `figure_names()`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.simulator.corpus import image_corpus
from fmri_data.simulator.stimuli import (
    BASE_GRID,
    figure_names,
    figure_patterns,
    random_patterns,
    render_patterns,
)
from fmri_data.simulator.voxels import AREAS, measure, responses, sample_population

__all__ = [
    "AREAS",
    "figure_names",
    "figure_patterns",
    "image_corpus",
    "random_patterns",
    "render_patterns",
    "simulate_miyawaki",
    "simulate_subjects",
]

DEFAULT_NOISE = 0.3
DEFAULT_EXPONENT = 0.6
DEFAULT_VOXEL_COUNTS = (1000, 900, 1100)
_DESIGN = (
    "Miyawaki et al. 2008: random binary patch patterns (p=0.5) for training, shapes and the letters of "
    "'neuron' for test in separate runs; Gaussian pRFs in V1-V3 with compressive summation, Gaussian noise "
    "and per-run drift"
)
# Independent random streams; each seed tuple has the same length so none can alias another.
_STIMULUS_STREAM, _VOXEL_STREAM, _NOISE_STREAM = 1, 2, 3


@dataclass(frozen=True)
class _Design:
    """The trial sequence: which pattern each trial shows, and its run, label and split side."""

    patterns: np.ndarray
    shown: np.ndarray
    run: np.ndarray
    labels: np.ndarray
    given_test: np.ndarray


def simulate_miyawaki(
    *,
    n_train: int = 300,
    train_repeats: int = 1,
    test_repeats: int = 4,
    grid: int = BASE_GRID,
    image_size: int = 28,
    n_voxels: int = 1000,
    noise: float = DEFAULT_NOISE,
    compressive_exponent: float = DEFAULT_EXPONENT,
    drift: float = 0.2,
    trials_per_run: int = 30,
    subject: str = "sim-01",
    subject_seed: int = 0,
    seed: int = 0,
) -> PairedDataset:
    """Simulate one subject of the experiment.

    `seed` fixes the stimuli, trial order and noise; `subject_seed` fixes the pRFs, so subjects that share
    `seed` see the same trials with different voxels. `noise` is the noise sd over the mean signal sd of a
    voxel; `drift` scales a per-run offset and trend the same way (0 turns it off). Training runs hold
    `trials_per_run` trials; each test run shows every figure once, so there are `test_repeats` of them.
    """
    params: dict[str, Any] = {
        "n_train": n_train,
        "train_repeats": train_repeats,
        "test_repeats": test_repeats,
        "grid": grid,
        "image_size": image_size,
        "n_voxels": n_voxels,
        "noise": noise,
        "compressive_exponent": compressive_exponent,
        "drift": drift,
        "trials_per_run": trials_per_run,
        "subject": subject,
        "subject_seed": subject_seed,
        "seed": seed,
    }
    _validate(params)
    design = _design(params, np.random.default_rng((_STIMULUS_STREAM, seed, 0)))
    population = sample_population(n_voxels, np.random.default_rng((_VOXEL_STREAM, subject_seed, 0)))
    signal = responses(population, design.patterns, compressive_exponent)[design.shown]
    noise_rng = np.random.default_rng((_NOISE_STREAM, seed, subject_seed))
    fmri = measure(signal, design.run, noise=noise, drift=drift, rng=noise_rng)
    images = render_patterns(design.patterns, image_size)[design.shown]
    metadata = {
        "name": "sim",
        "source": "fmri_data.simulator",
        "design": _DESIGN,
        "figures": figure_names(),
        "labels": "0: random pattern; i >= 1: figures[i - 1]",
        **params,
    }
    return PairedDataset.from_arrays(
        fmri,
        images,
        labels=design.labels,
        run=design.run,
        subject=np.full(len(fmri), subject),
        voxel_coords=population.cortical_coords(),
        roi_masks=population.roi_masks(),
        given_test=design.given_test,
        metadata=metadata,
    )


def simulate_subjects(
    n_subjects: int = 3, *, n_voxels: int | Sequence[int] | None = None, seed: int = 0, **shared: Any
) -> dict[str, PairedDataset]:
    """Several subjects ("sim-01", ...) who see the same trials with their own pRFs, voxel counts and noise.

    `n_voxels` is one count for all, one per subject, or None for 1000, 900, 1100, 1000, ... Other keyword
    arguments go to `simulate_miyawaki` for every subject.
    """
    if n_subjects < 1:
        raise DataError(f"simulator: n_subjects must be at least 1, got {n_subjects}")
    per_subject = {"subject", "subject_seed"} & shared.keys()
    if per_subject:
        raise DataError(f"simulator: {sorted(per_subject)} are set per subject; do not pass them")
    counts = _voxel_counts(n_subjects, n_voxels)
    subjects = {}
    for index, count in enumerate(counts):
        name = f"sim-{index + 1:02d}"
        subjects[name] = simulate_miyawaki(
            n_voxels=count, subject=name, subject_seed=index, seed=seed, **shared
        )
    return subjects


def _voxel_counts(n_subjects: int, n_voxels: int | Sequence[int] | None) -> list[int]:
    if n_voxels is None:
        return list(islice(cycle(DEFAULT_VOXEL_COUNTS), n_subjects))
    if isinstance(n_voxels, int):
        return [n_voxels] * n_subjects
    if len(n_voxels) != n_subjects:
        raise DataError(f"simulator: n_voxels lists {len(n_voxels)} counts for {n_subjects} subjects")
    return [int(count) for count in n_voxels]


def _validate(params: dict[str, Any]) -> None:
    """Refuse parameters that would give an empty, undrawable or meaningless experiment."""
    minimum = {
        "n_train": 1,
        "train_repeats": 1,
        "test_repeats": 1,
        "n_voxels": 1,
        "trials_per_run": 1,
        "grid": BASE_GRID,
        "image_size": params["grid"],
        "subject_seed": 0,
        "seed": 0,
    }
    for name, low in minimum.items():
        value = params[name]
        if not isinstance(value, int | np.integer) or value < low:
            raise DataError(f"simulator: {name} must be an integer of at least {low}, got {value!r}")
    for name in ("noise", "drift"):
        if not (math.isfinite(params[name]) and params[name] >= 0):
            raise DataError(f"simulator: {name} must be a finite number >= 0, got {params[name]!r}")
    exponent = params["compressive_exponent"]
    if not 0 < exponent <= 1:
        raise DataError(f"simulator: compressive_exponent must lie in (0, 1], got {exponent!r}")
    if not (isinstance(params["subject"], str) and params["subject"]):
        raise DataError(f"simulator: subject must be a non-empty string, got {params['subject']!r}")


def _design(params: dict[str, Any], rng: np.random.Generator) -> _Design:
    """Training trials (each pattern once per repeat, shuffled) then test runs (each figure once per run)."""
    n_train, grid = params["n_train"], params["grid"]
    figures = np.stack(list(figure_patterns(grid).values()))
    train = random_patterns(n_train, grid, rng, exclude=figures)
    train_shown = np.concatenate([rng.permutation(n_train) for _ in range(params["train_repeats"])])
    test_shown = np.concatenate([rng.permutation(len(figures)) for _ in range(params["test_repeats"])])
    train_run = np.arange(len(train_shown)) // params["trials_per_run"]
    test_run = train_run[-1] + 1 + np.arange(len(test_shown)) // len(figures)
    return _Design(
        patterns=np.concatenate([train, figures]),
        shown=np.concatenate([train_shown, n_train + test_shown]),
        run=np.concatenate([train_run, test_run]),
        labels=np.concatenate([np.zeros(len(train_shown), dtype=np.int64), test_shown + 1]),
        given_test=np.concatenate([np.zeros(len(train_shown), bool), np.ones(len(test_shown), bool)]),
    )
