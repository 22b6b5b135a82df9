"""Reconstructions file (.npz): the hand-off between decoding runs and evaluation.

Keys: `truth` [n, H, W] (or RGB [n, H, W, 3]) in [0, 1], `stimulus_id` [n], optional `trial_index` [n],
optional `evaluation` (the run's EvaluationSettings as a JSON string, so re-scoring the file reproduces its
metrics.json), and one array of truth's shape per method, keyed by the method name (e.g. "ridge",
"ddpm-1"). Stored without pickles.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.errors import EvaluationError
from fmri_eval.settings import EvaluationSettings
from fmri_eval.validation import check_image_pair, check_images, check_stimulus_id

RESERVED_KEYS = ("truth", "stimulus_id", "trial_index", "evaluation")


@dataclass(frozen=True)
class ReconstructionSet:
    """Contents of a reconstructions file; `trial_index` maps rows back to dataset trials and `settings`
    says how the run was scored, where the file holds them."""

    truth: NDArray[np.floating]
    stimulus_id: NDArray
    reconstructions: dict[str, NDArray[np.floating]]
    trial_index: NDArray[np.integer] | None = None
    settings: EvaluationSettings | None = None


def _check_method_name(name: str) -> None:
    if not isinstance(name, str) or not name or name in RESERVED_KEYS or "/" in name or "\\" in name:
        raise EvaluationError(
            f"invalid method name {name!r}; use a non-empty name without slashes, not one of {RESERVED_KEYS}"
        )


def _check_trial_index(trial_index: ArrayLike | None, n: int) -> NDArray[np.integer] | None:
    if trial_index is None:
        return None
    index = np.asarray(trial_index)
    if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
        raise EvaluationError(
            f"trial_index must be {n} integers, got dtype {index.dtype} shape {index.shape}; "
            "pass one dataset trial number per row"
        )
    return index


def _checked_set(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    stimulus_id: ArrayLike,
    trial_index: ArrayLike | None,
    settings: EvaluationSettings | None,
) -> ReconstructionSet:
    """Validate everything a file must satisfy, keeping the caller's dtypes so round trips are exact."""
    truth_arr = np.asarray(truth)
    check_images(truth_arr, "truth")
    n = truth_arr.shape[0]
    ids = check_stimulus_id(stimulus_id, n)
    if ids is None:
        raise EvaluationError("stimulus_id is required; pass one stimulus id per test trial")
    if not reconstructions:
        raise EvaluationError(
            "no method arrays given; pass at least one method name -> images of truth's shape"
        )
    methods = {}
    for name, images in reconstructions.items():
        _check_method_name(name)
        methods[name] = np.asarray(images)
        check_image_pair(truth_arr, methods[name], recon_name=f"method {name!r}")
    return ReconstructionSet(truth_arr, ids, methods, _check_trial_index(trial_index, n), settings)


def save_reconstructions(
    path: str | Path,
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    stimulus_id: ArrayLike,
    trial_index: ArrayLike | None = None,
    settings: EvaluationSettings | None = None,
) -> Path:
    """Validate and write a reconstructions file at exactly `path` (no suffix is added).

    `settings` (how the run was scored) travel with the file, so re-scoring it needs no flags.
    Validation refuses object arrays, so nothing is ever pickled.
    """
    checked = _checked_set(truth, reconstructions, stimulus_id, trial_index, settings)
    arrays = {"truth": checked.truth, "stimulus_id": checked.stimulus_id, **checked.reconstructions}
    if checked.trial_index is not None:
        arrays["trial_index"] = checked.trial_index
    if checked.settings is not None:
        arrays["evaluation"] = np.array(checked.settings.to_json())
    path = Path(path)
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def _read_npz(path: Path) -> dict[str, NDArray]:
    if not path.is_file():
        raise EvaluationError(f"reconstructions file not found: {path}; check the path")
    advice = "re-save it with save_reconstructions"
    if path.stat().st_size == 0:
        raise EvaluationError(f"{path} is empty (0 bytes); {advice}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EvaluationError(f"{path} is not a readable .npz archive; {advice}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise EvaluationError(f"{path} holds a single array, not an .npz archive; {advice}")
    try:
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except ValueError as exc:
        raise EvaluationError(
            f"{path} holds an unreadable array (object arrays need pickles, which are refused); {advice}"
        ) from exc
    except (OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise EvaluationError(f"{path} is a damaged .npz archive; {advice}") from exc


def load_reconstructions(path: str | Path) -> ReconstructionSet:
    """Read and validate a reconstructions file written by `save_reconstructions` (pickles refused)."""
    path = Path(path)
    arrays = _read_npz(path)
    for key in ("truth", "stimulus_id"):
        if key not in arrays:
            raise EvaluationError(
                f"{path} has no {key!r} array (found {sorted(arrays)}); re-save it with save_reconstructions"
            )
    truth = arrays.pop("truth")
    stimulus_id = arrays.pop("stimulus_id")
    trial_index = arrays.pop("trial_index", None)
    settings = _read_settings(path, arrays.pop("evaluation", None))
    if not arrays:
        raise EvaluationError(f"{path} holds no method arrays besides {RESERVED_KEYS}; add reconstructions")
    return _checked_set(truth, arrays, stimulus_id, trial_index, settings)


def _read_settings(path: Path, record: NDArray | None) -> EvaluationSettings | None:
    """The saved EvaluationSettings, or None for files written before they were saved."""
    if record is None:
        return None
    if record.shape != () or record.dtype.kind != "U":
        raise EvaluationError(
            f"{path}: 'evaluation' must be one JSON string, got dtype {record.dtype} shape {record.shape}; "
            "re-save it with save_reconstructions"
        )
    try:
        return EvaluationSettings.from_json(str(record))
    except EvaluationError as exc:
        raise EvaluationError(f"{path}: unreadable 'evaluation' record ({exc}); re-save it") from exc
