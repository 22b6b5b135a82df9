"""Run methods over the folds of a split so every test trial is predicted by a model that never saw it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fmri_data.corpora import CorpusScreening
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods.base import IdentifiesStimuli, MethodSettings
from fmri_data.methods.fingerprint import (
    check_fingerprint,
    dataset_digest,
    fold_fingerprints,
    record_fingerprint,
)
from fmri_data.methods.registry import check_colour, check_methods, check_stimuli, create_method
from fmri_data.preprocessing import Preprocessing, repeat_groups
from fmri_data.splits import Split

_SIMILARITY = "similarity:"


@dataclass
class CrossValidatedReconstructions:
    """Held-out predictions gathered over all folds, aligned trial by trial with the truth.

    trial_index points into the source data set (with test-repeat averaging: the first trial of each
    averaged group). similarities: for methods that can score fMRI against images (`IdentifiesStimuli`),
    [n_test, n_candidates] scores against every stimulus tested in any fold (`candidate_stimulus`), for
    brain <-> image identification. artefacts: the files the first fold's methods named (file name in the
    run folder -> path), such as `loss_curve-sd-lora.png`. records: method -> what each fold's fit reported
    (ReconstructionMethod.records, e.g. settings chosen on validation), one dict per fold. seconds:
    method -> the wall seconds of each fold's "fit" and "predict" and of the parts the method timed
    (ReconstructionMethod.timings, e.g. "validation", a part of "fit"), one dict per fold. prior_corpus:
    the screening of the run's prior corpus against its test stimuli (None without one).
    """

    truth: np.ndarray
    stimulus_id: np.ndarray
    trial_index: np.ndarray
    fold: np.ndarray
    reconstructions: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    similarities: dict[str, np.ndarray] = field(default_factory=dict)
    candidate_stimulus: np.ndarray | None = None
    artefacts: dict[str, Path] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    prior_corpus: CorpusScreening | None = None

    @property
    def n_test(self) -> int:
        return len(self.truth)


def reconstruct_over_splits(
    dataset: PairedDataset,
    splits: Sequence[Split],
    methods: Sequence[str],
    *,
    settings: MethodSettings | None = None,
    preprocessing: Preprocessing | None = None,
    progress: bool = True,
    allow_corpus_leaks: bool = False,
) -> CrossValidatedReconstructions:
    """Fit every method on each fold's training trials and predict its test trials.

    A prior corpus in `settings` is first screened against every stimulus any fold tests: near duplicates
    are dropped, and a corpus with more than 1% of them is refused unless `allow_corpus_leaks`.
    """
    if not methods:
        raise DataError("no method given; name at least one, e.g. --method ridge")
    settings = settings or MethodSettings()
    preprocessing = preprocessing or Preprocessing()
    check_methods(methods)
    if dataset.is_colour:
        check_colour(methods, settings)
    _check_each_trial_tested_once(dataset, splits)
    trained_on = np.unique(np.concatenate([split.train for split in splits]))
    _, first_trials = np.unique(dataset.stimulus_id[trained_on], return_index=True)
    check_stimuli(methods, settings, dataset.subset(trained_on[first_trials]))  # each stimulus trained on
    candidate_stimulus, candidate_images = _tested_stimuli(dataset, splits)
    if settings.prior_corpus is not None:  # before any training, and before any folder is stamped
        corpus = settings.prior_corpus.screened(candidate_images, allow_leaks=allow_corpus_leaks)
        settings = replace(settings, prior_corpus=corpus)
    _stamp_work_folders(dataset, splits, methods, settings, preprocessing)

    parts: list[dict[str, np.ndarray]] = []
    artefacts: dict[str, Path] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, list[dict[str, float]]] = {}
    bar = tqdm(
        total=len(splits) * len(methods),
        desc="fit+predict",
        unit="model",
        disable=None if progress else True,  # on a terminal only: logs get no escape codes
    )
    for split in splits:
        train, test = preprocessing.apply(dataset.subset(split.train), dataset.subset(split.test))
        part = {
            "truth": test.images,
            "stimulus_id": test.stimulus_id,
            "trial_index": _trial_index(dataset, split, preprocessing),
            "fold": np.full(test.n_trials, split.fold),
        }
        fold_settings = settings
        if settings.work_dir is not None:
            fold_settings = replace(settings, work_dir=settings.work_dir / f"fold-{split.fold:03d}")
        for name in methods:
            bar.set_postfix_str(f"{name}, fold {split.fold + 1}/{len(splits)}")
            started = time.perf_counter()
            method = create_method(name, fold_settings).fit(train)
            fitted = time.perf_counter()
            record = method.records()
            if record:
                records.setdefault(name, []).append({"fold": split.fold, **record})
            if split is splits[0]:  # the first fold's files stand for the run (e.g. its loss curves)
                for key, path in method.artefacts().items():
                    artefacts[f"{key}-{name}{Path(path).suffix}"] = Path(path)
            for row, images in method.predict_named(test.fmri).items():
                part[row] = _checked_prediction(row, images, test)
            if isinstance(method, IdentifiesStimuli):
                part[_SIMILARITY + name] = np.asarray(method.similarities(test.fmri, candidate_images))
            seconds.setdefault(name, []).append(
                {"fit": fitted - started, "predict": time.perf_counter() - fitted, **method.timings()}
            )
            bar.update()
        parts.append(part)
    bar.close()

    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    order = np.argsort(merged["trial_index"], kind="stable")
    merged = {key: value[order] for key, value in merged.items()}
    fixed = ("truth", "stimulus_id", "trial_index", "fold")
    notes = preprocessing.describe()
    if settings.prior_corpus is not None:
        notes.append(settings.prior_corpus.screening.describe())
    shared = {int(s) for split in splits for s in split.overlap(dataset.stimulus_id)}
    if shared:
        notes.append(
            f"LEAKY SPLIT: {len(shared)} test stimuli also occur in training (allowed explicitly with "
            "allow_overlap); these numbers measure memorisation, not decoding"
        )
    similarities = {k.removeprefix(_SIMILARITY): v for k, v in merged.items() if k.startswith(_SIMILARITY)}
    return CrossValidatedReconstructions(
        truth=merged["truth"],
        stimulus_id=merged["stimulus_id"],
        trial_index=merged["trial_index"],
        fold=merged["fold"],
        reconstructions={k: v for k, v in merged.items() if k not in fixed and not k.startswith(_SIMILARITY)},
        notes=notes,
        similarities=similarities,
        candidate_stimulus=candidate_stimulus if similarities else None,
        artefacts=artefacts,
        records=records,
        seconds=seconds,
        prior_corpus=None if settings.prior_corpus is None else settings.prior_corpus.screening,
    )


def _stamp_work_folders(
    dataset: PairedDataset,
    splits: Sequence[Split],
    methods: Sequence[str],
    settings: MethodSettings,
    preprocessing: Preprocessing,
) -> None:
    """Check every fold's method folders against this run (under resume), all before any is stamped."""
    if settings.work_dir is None:
        return
    digest = dataset_digest(dataset)
    stamps = []
    for split in splits:
        fold_dir = settings.work_dir / f"fold-{split.fold:03d}"
        fingerprints = fold_fingerprints(dataset, split, preprocessing, settings, list(methods), digest)
        for name, fingerprint in fingerprints.items():
            check_fingerprint(fold_dir / name, fingerprint, settings.resume)
            stamps.append((fold_dir / name, fingerprint))
    for folder, fingerprint in stamps:
        record_fingerprint(folder, fingerprint)


def _tested_stimuli(dataset: PairedDataset, splits: Sequence[Split]) -> tuple[np.ndarray, np.ndarray]:
    """Every stimulus on the test side of some fold, with one image each: the identification candidates."""
    tested = np.concatenate([split.test for split in splits])
    stimuli, first = np.unique(dataset.stimulus_id[tested], return_index=True)
    return stimuli, dataset.images[tested[first]]


def _check_each_trial_tested_once(dataset: PairedDataset, splits: Sequence[Split]) -> None:
    if not splits:
        raise DataError(f"{dataset.name}: the split has no folds")
    counts = np.bincount(np.concatenate([s.test for s in splits]), minlength=dataset.n_trials)
    if counts.max() > 1:
        raise DataError(
            f"{dataset.name}: {int((counts > 1).sum())} trials are in the test side of several folds"
        )


def _trial_index(dataset: PairedDataset, split: Split, prep: Preprocessing) -> np.ndarray:
    if prep.average_repeats not in ("test", "both"):
        return split.test
    # average_repeats keeps the first trial of each group, in the order repeat_groups gives.
    first, _ = repeat_groups(dataset.subset(split.test))
    return split.test[first]


def _checked_prediction(name: str, images: np.ndarray, test: PairedDataset) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    expected = test.images.shape
    if images.shape != expected:
        raise DataError(f"method {name!r} returned images of shape {images.shape}, expected {expected}")
    if not np.isfinite(images).all():
        raise DataError(f"method {name!r} returned NaN/inf pixels")
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise DataError(
            f"method {name!r} returned pixels in [{images.min():.3g}, {images.max():.3g}]; "
            "methods must return [0, 1]"
        )
    return np.clip(images, 0.0, 1.0)
