"""A run folder: metrics.json, reconstructions.npz, reconstructions.png and report.md, written atomically."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fmri_eval import __version__
from fmri_eval.atomic import atomic_output_dir, check_writable_folder
from fmri_eval.errors import EvaluationError
from fmri_eval.evaluate import Progress, evaluate_run, silent
from fmri_eval.figures import reconstruction_grid
from fmri_eval.identification import stimulus_retrieval
from fmri_eval.io import save_reconstructions
from fmri_eval.literature_table import FeatureFn, literature_table
from fmri_eval.report import write_report
from fmri_eval.settings import EvaluationSettings

SCORED_KEYS = ("n_test", "n_stimuli", "repeats_averaged", "ci", "baseline", "methods")
"""The keys of metrics.json that its reconstructions.npz alone determines (see evaluate_run)."""
RUN_KEYS = ("dataset", "split", *SCORED_KEYS, "notes", "software", "retrieval", "literature")
RUN_FILES = ("metrics.json", "reconstructions.npz")
"""What marks a folder as a run's (other reports write a metrics.json of their own: fmri_ldm's)."""


def check_run_folder(
    out_dir: str | Path, what: str = "output folder", keep: Mapping[str, str | Path | None] | None = None
) -> None:
    """Refuse, before any work, an output folder that cannot be written (atomic.check_writable_folder) or
    that writing the run would destroy more than an earlier run in: `write_run` replaces the folder whole,
    so a folder of other files (`--out runs` would delete every run in it) or one holding a folder to `keep`
    (a work or cache folder, by the option that named it) must not become a run folder."""
    check_writable_folder(out_dir, what, swapped=True)
    out_dir = Path(out_dir)
    for option, folder in (keep or {}).items():
        if folder is not None and Path(folder).resolve().is_relative_to(out_dir.resolve()):
            raise EvaluationError(
                f"{option} {folder} is inside {what} {out_dir}, which the run replaces whole "
                "when it ends; put them side by side"
            )
    earlier_run = all((out_dir / name).is_file() for name in RUN_FILES)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not earlier_run:
        raise EvaluationError(
            f"{what} {out_dir} holds files but not an earlier run ({' and '.join(RUN_FILES)}), and "
            "writing the run would replace it whole; choose a new folder or an earlier run's"
        )


def software_versions() -> dict[str, str]:
    """Versions the numbers depend on: numpy draws the bootstrap resamples, scikit-image computes SSIM."""
    return {
        "fmri_eval": __version__,
        "numpy": np.__version__,
        "scikit_image": importlib.metadata.version("scikit-image"),
    }


def score_run(
    *,
    dataset: str,
    split: str,
    truth: ArrayLike,
    stimulus_id: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    settings: EvaluationSettings | None = None,
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    similarities: Mapping[str, ArrayLike] | None = None,
    candidate_stimulus: ArrayLike | None = None,
    literature: bool = False,
    extract_features: FeatureFn | None = None,
    progress: Progress = silent,
) -> dict[str, Any]:
    """Everything metrics.json holds, computed and nothing written: the scores with their intervals and
    paired differences (evaluate_run), the run's context, retrieval where `similarities` are given (method ->
    [n_test, n_candidates] brain-to-image scores against the stimuli `candidate_stimulus`) and the NSD
    literature's table where `literature` (its feature columns from `extract_features`)."""
    settings = settings or EvaluationSettings()
    clashes = sorted(set(extra or {}) & set(RUN_KEYS))
    if clashes:
        raise EvaluationError(f"extra keys {clashes} clash with reserved metrics.json keys; rename them")
    scored = evaluate_run(truth, reconstructions, stimulus_id, settings, progress)
    run: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        **scored,
        "notes": list(notes),
        "software": software_versions(),
        **(extra or {}),
    }
    if similarities:
        if candidate_stimulus is None:
            raise EvaluationError("similarities need candidate_stimulus (the stimulus id of each column)")
        run["retrieval"] = {
            name: stimulus_retrieval(scores, stimulus_id, candidate_stimulus)
            for name, scores in similarities.items()
        }
    if literature:
        table, table_notes = literature_table(
            truth,
            reconstructions,
            extract_features,
            stimulus_id,
            n_boot=settings.n_boot,
            seed=settings.seed,
            confidence=settings.level,
            progress=progress,
        )
        run["literature"] = {"methods": table, "notes": table_notes}
    return run


def write_run(
    out_dir: str | Path,
    *,
    dataset: str,
    split: str,
    truth: ArrayLike,
    stimulus_id: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    trial_index: ArrayLike | None = None,
    settings: EvaluationSettings | None = None,
    notes: Sequence[str] = (),
    command: str | None = None,
    extra: Mapping[str, Any] | None = None,
    similarities: Mapping[str, ArrayLike] | None = None,
    candidate_stimulus: ArrayLike | None = None,
    attachments: Mapping[str, str | Path] | None = None,
    literature: bool = False,
    extract_features: FeatureFn | None = None,
    progress: Progress = silent,
) -> dict[str, Any]:
    """score_run, then write metrics.json, reconstructions.npz, reconstructions.png and report.md.

    `settings` (bootstrap count, seed and level, baseline, repeat averaging) are saved in the npz, so
    `python -m fmri_eval DIR/reconstructions.npz` reproduces this metrics.json's SCORED_KEYS exactly.
    `attachments` (file name -> existing file, e.g. training curves) are copied in beside them.
    Metrics are computed before any file is written, and files go through `atomic_output_dir`,
    so `out_dir` holds either the previous complete run or the new one (check_run_folder first, before
    the work that makes the run). Returns the metrics dict.
    """
    settings = settings or EvaluationSettings()
    run = score_run(
        dataset=dataset,
        split=split,
        truth=truth,
        stimulus_id=stimulus_id,
        reconstructions=reconstructions,
        settings=settings,
        notes=notes,
        extra=extra,
        similarities=similarities,
        candidate_stimulus=candidate_stimulus,
        literature=literature,
        extract_features=extract_features,
        progress=progress,
    )
    try:
        metrics_text = json.dumps(run, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(
            f"metrics are not plain JSON ({exc}); pass JSON-compatible extra values"
        ) from exc
    with atomic_output_dir(out_dir) as staging:
        (staging / "metrics.json").write_text(metrics_text + "\n", encoding="utf-8")
        save_reconstructions(
            staging / "reconstructions.npz", truth, reconstructions, stimulus_id, trial_index, settings
        )
        reconstruction_grid(staging / "reconstructions.png", truth, reconstructions)
        write_report(
            staging / "report.md",
            dataset=dataset,
            split=split,
            scored={key: run[key] for key in SCORED_KEYS},
            figure="reconstructions.png",
            notes=notes,
            command=command,
            retrieval=run.get("retrieval"),
            literature=run.get("literature"),
        )
        for name, source in (attachments or {}).items():
            shutil.copyfile(source, staging / name)
    return run
