"""What made a method's work folder, so that `--resume` continues only the run it belongs to.

Each fold's method folder (`WORK/fold-NNN/<method>/`) gets a `fingerprint.json`: the data set's name and a
hash of its contents, the fold and the hashes of its train and test trials, the preprocessing, the method
and the settings that change what it learns (seed, quick, pretrained base, prior corpus (its content hash),
the grid of settings chosen on validation, prior adapter). On resume a
folder whose fingerprint differs is refused before any training, in one line that says what differs. Package
versions and the sampling options are recorded too, but not compared: a bug-fix release should not strand a
run, and a resumed run may sample with more steps or samples. So may a method's grid of settings it does
not read differ, and of settings it applies when it predicts (a diffusion method's strength or likelihood
weight) where no setting it fits by has more than one value, or where the method fits each choice apart
(ReconstructionMethod.fits_each_choice_apart): every network of the resumed run, its validation probe's
too, continues from its finished checkpoint (what is fitted in seconds, ridges and encoding models, is
fitted again), and the run chooses again among the new grid's samples.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.digest import array_digest
from fmri_data.errors import DataError
from fmri_data.methods.base import SCOPE, MethodSettings
from fmri_data.methods.registry import JOIN, method_class
from fmri_data.preprocessing import Preprocessing
from fmri_data.splits import Split

FINGERPRINT_FILE = "fingerprint.json"
RECORDED_ONLY = ("versions", "sampling")
"""Recorded but not compared: a new release, or more samples or steps at sampling time, may resume a run."""
SHAPES_TRAINING = (
    "prior_adapter",
    "condition",
    "stage1",
    "stage2",
    "vdvae",
    "vdvae_layers",
    "corpus_finetune",
    "condition_readout",
)
"""The sampling options (--prior-adapter, --condition, Brain-Diffuser's stage models, --corpus-finetune, the
cvae's --condition-readout) that change what is trained, so --resume compares them."""
_PACKAGES = ("fmri-data", "fmri-encoders", "fmri-diffusion", "fmri-eval", "torch", "diffusers", "numpy")


def dataset_digest(dataset: PairedDataset) -> str:
    """SHA-256 of the fMRI, the images and the stimulus ids: two files with the same contents match."""
    return array_digest(dataset.fmri, dataset.images, np.asarray(dataset.stimulus_id))


def _versions() -> dict[str, str]:
    found = {}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def fold_fingerprints(
    dataset: PairedDataset,
    split: Split,
    preprocessing: Preprocessing,
    settings: MethodSettings,
    methods: list[str],
    data_digest: str,
) -> dict[str, dict[str, Any]]:
    """Method name -> the fingerprint of its folder in this fold, from the settings that method sees (an
    ensemble: those of its members), so a grid given to one method alone leaves the others' folders be."""
    shared = {
        "data": {"name": dataset.name, "sha256": data_digest},
        "fold": split.fold,
        "trials": {
            "train": array_digest(np.asarray(split.train)),
            "test": array_digest(np.asarray(split.test)),
        },
        "preprocessing": asdict(preprocessing),
    }
    fingerprints = {}
    for name in methods:
        seen = _seen_by(settings, name)
        sampling = {key: value for key, value in seen.sampling.items() if not _shapes_training(key)}
        fingerprints[name] = {
            **shared,
            "method": name,
            "settings": _learning(seen),
            "sampling": sampling,
            "versions": _versions(),
        }
    return fingerprints


def _seen_by(settings: MethodSettings, name: str) -> MethodSettings:
    """The settings `name` sees: its own view, or an ensemble's, with the keys scoped to its members."""
    if JOIN not in name:
        return settings.for_method(name)
    members = set(name.split(JOIN))

    def kept(values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if SCOPE not in k or k.partition(SCOPE)[0] in members}

    return replace(settings, sampling=kept(settings.sampling), choices=kept(settings.choices))


def _shapes_training(key: str) -> bool:
    return key.rpartition(SCOPE)[2] in SHAPES_TRAINING  # the field, scoped or not


# run-wide training options and the values that mean "each model's own"
_OPTION_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "mixed_precision": (None, "no"),
    "batch_size": (None,),
    "gradient_accumulation_steps": (None, 1),
    "optimizer": (None, "adamw"),
    "ema": (True,),
    "train_steps": (1,),
    "probe_steps": (1,),
    "refit_steps": (1,),
    "validation_folds": (1,),
}


_RECORDED_AS = {"batch_size": "batch_size_drawn"}
"""Options recorded under a new name since a fix changed what they train: a run's batch size reached the
samplers of cvae, ddpm and ldm only from fmri-diffusion 0.28.1 on (they drew their recipes' batch before),
so a folder that recorded it under the old name is refused on resume, not continued as if trained so."""


def _learning(settings: MethodSettings) -> dict[str, Any]:
    """What changes what a method learns: compared on resume."""
    return {
        "seed": settings.seed,
        "quick": settings.quick,
        "pretrained": settings.pretrained,
        "prior_corpus": None if settings.prior_corpus is None else settings.prior_corpus.digest,
        "choices": {key: list(values) for key, values in settings.choices.items()} or None,
        **{  # recorded where set, so that folders of runs before these options still resume
            _RECORDED_AS.get(key, key): getattr(settings, key)
            for key, defaults in _OPTION_DEFAULTS.items()
            if getattr(settings, key) not in defaults
        },
        **{key: value for key, value in settings.sampling.items() if _shapes_training(key)},
    }


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"settings": {"seed": 0}} -> {"settings.seed": 0}, so a message names the very field that differs."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (recorded, current) for every compared field that differs."""
    compared = {key: value for key, value in current.items() if key not in RECORDED_ONLY}
    now = _flat(json.loads(json.dumps(compared)))
    then = _flat({key: recorded.get(key) for key in compared})
    return {
        key: (then.get(key), now.get(key))
        for key in sorted(set(now) | set(then))
        if then.get(key) != now.get(key)
    }


def check_fingerprint(folder: Path, fingerprint: dict[str, Any], resume: bool) -> None:
    """Under `resume`, refuse a folder made by another run (or by a version that kept no fingerprint)."""
    if not resume or not folder.is_dir():
        return
    path = folder / FINGERPRINT_FILE
    if not path.is_file():
        if any(folder.iterdir()):
            raise DataError(
                f"--resume: {folder} holds no {FINGERPRINT_FILE} (made before runs were fingerprinted), so "
                "what it continues cannot be checked; pass a new --work-dir, or drop --resume"
            )
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"--resume: {path} is unreadable ({exc}); pass a new --work-dir") from None
    may_change = _grid_changes_that_refit_nothing(fingerprint["method"], recorded, fingerprint)
    differences = {
        key: values for key, values in _differences(recorded, fingerprint).items() if key not in may_change
    }
    if differences:
        field, (then, now) = next(iter(differences.items()))
        raise DataError(
            f"--resume: {folder} belongs to another run: its {', '.join(differences)} differ "
            f"({field}: {then!r} there, {now!r} now); "
            "pass another --work-dir, or drop --resume to start afresh"
        )


def _grid_changes_that_refit_nothing(
    method: str, recorded: dict[str, Any], current: dict[str, Any]
) -> set[str]:
    """The dotted fields of the two grids (`settings.choices`) that may differ on resume: those of settings
    `method` does not read, and of settings it applies when it predicts, provided that a choice routed to
    another fitted model is safe (each setting it fits by has one value at most, or the method and every
    member fit each choice apart) and that both grids or neither make it fit a validation probe."""
    grids = [(record.get("settings") or {}).get("choices") or {} for record in (recorded, current)]
    kinds = {key: _setting_kind(method, key) for grid in grids for key in grid}
    fits_probe = [any(kinds[key] != "unread" for key in grid) for grid in grids]
    apart = all(method_class(member).fits_each_choice_apart() for member in method.split(JOIN))
    one_model = apart or all(len(grid[key]) <= 1 for grid in grids for key in grid if kinds[key] == "fit")
    return {
        f"settings.choices.{key}"
        for key, kind in kinds.items()
        if kind == "unread" or (kind == "predict" and one_model and fits_probe[0] == fits_probe[1])
    }


def _setting_kind(method: str, key: str) -> str:
    """How `method` (itself, or each member of an ensemble the key holds for) uses a setting to choose:
    "unread" where none reads it, "predict" where all that read it apply it when they predict, else "fit"."""
    scope, _, name = key.rpartition(SCOPE)
    members = [method_class(member) for member in ([scope] if scope else method.split(JOIN))]
    readers = [member for member in members if name in member.settings_to_choose()]
    if not readers:
        return "unread"
    return "predict" if all(name in member.predict_time_settings() for member in readers) else "fit"


def record_fingerprint(folder: Path, fingerprint: dict[str, Any]) -> None:
    """Write `folder/fingerprint.json` in one step (a temp file renamed), so no reader sees half of it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{FINGERPRINT_FILE}.", dir=folder)  # unique per process
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    os.replace(staging, folder / FINGERPRINT_FILE)
