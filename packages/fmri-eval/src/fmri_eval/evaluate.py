"""Evaluate several reconstruction methods on one test set: means, stimulus-level CIs, paired differences."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.bootstrap import bootstrap_ci, paired_comparison, resampling_unit
from fmri_eval.errors import EvaluationError
from fmri_eval.identification import twoway_identification
from fmri_eval.metrics import image_metrics
from fmri_eval.settings import EvaluationSettings
from fmri_eval.validation import check_image_pair, check_images, check_stimulus_id

SCORE_NAMES = ("pcc", "ssim", "mse", "psnr", "twoway")
LOWER_IS_BETTER = frozenset({"mse"})
DEFAULT_BASELINE = "ridge"

Scores = dict[str, NDArray[np.float64]]
Progress = Callable[[Iterable[Any], str], Iterable[Any]]
"""Wraps the per-method loop with a description, e.g. `lambda items, desc: tqdm(items, desc=desc)`;
fmri_eval itself draws no bars, so it needs no progress library."""


def silent(items: Iterable[Any], description: str) -> Iterable[Any]:
    """The default Progress: no bar."""
    return items


def item_scores(truth: ArrayLike, recon: ArrayLike, stimulus_id: ArrayLike | None = None) -> Scores:
    """Per-trial scores keyed by SCORE_NAMES; twoway is per reconstruction on pixels (NaN if undefined)."""
    truth_arr, recon_arr = check_image_pair(truth, recon)
    scores = image_metrics(truth_arr, recon_arr)
    scores["twoway"] = twoway_identification(truth_arr, recon_arr, stimulus_id).per_item
    return scores


def _scores_by_method(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    stimulus_id: ArrayLike | None,
    progress: Progress = silent,
) -> dict[str, Scores]:
    if not reconstructions:
        raise EvaluationError("no reconstructions given; pass at least one method name -> images")
    truth_arr = check_images(truth, "truth")
    check_stimulus_id(stimulus_id, truth_arr.shape[0])
    scores = {}
    for name, recon in progress(list(reconstructions.items()), "scoring"):
        _, recon_arr = check_image_pair(truth_arr, recon, recon_name=f"reconstructions[{name!r}]")
        scores[name] = item_scores(truth_arr, recon_arr, stimulus_id)
    return scores


def check_baseline(baseline: str, method_names: Collection[str]) -> None:
    """Refuse a baseline that was not run, before any scoring starts."""
    if baseline not in method_names:
        raise EvaluationError(
            f"baseline {baseline!r} is not among the methods {sorted(method_names)}; "
            "pass one of those as the baseline"
        )


def choose_baseline(method_names: Collection[str], requested: str | None = None) -> str | None:
    """The requested baseline (which must exist), else ridge where it was run, else none."""
    if requested is not None:
        check_baseline(requested, method_names)
        return requested
    return DEFAULT_BASELINE if DEFAULT_BASELINE in method_names else None


def _differences(
    method: Scores, baseline: Scores, clusters: ArrayLike | None, n_boot: int, seed: int, confidence: float
) -> dict[str, dict[str, Any]]:
    """{score: {"delta", "ci", "p"}} of method - baseline over the same trials."""
    differences = {}
    for score in SCORE_NAMES:
        result = paired_comparison(
            method[score], baseline[score], n_boot=n_boot, confidence=confidence, seed=seed, clusters=clusters
        )
        differences[score] = {
            "delta": result.mean_difference,
            "ci": [result.ci_low, result.ci_high],
            "p": result.p_value,
        }
    return differences


def evaluate_reconstructions(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    stimulus_id: ArrayLike | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    baseline: str | None = None,
    confidence: float = 0.95,
    progress: Progress = silent,
) -> dict[str, dict[str, Any]]:
    """Mean of each score over all test trials, "<score>_ci": [low, high], and "vs_baseline".

    Intervals are percentile bootstraps that resample stimuli when `stimulus_id` shows a stimulus in
    several trials, else trials (see fmri_eval.bootstrap). Two-way identification runs on pixels and,
    given `stimulus_id`, ignores competitors showing the same stimulus. With a `baseline`, every other
    method gets "vs_baseline": {score: {"delta": mean(method - baseline), "ci", "p"}}, paired over the
    same trials. Each method's numbers depend only on its own images, the baseline's and the seed.
    """
    if baseline is not None:
        check_baseline(baseline, reconstructions)
    scores = _scores_by_method(truth, reconstructions, stimulus_id, progress)
    summary: dict[str, dict[str, Any]] = {}
    for name, method_scores in scores.items():
        means: dict[str, Any] = {}
        intervals: dict[str, Any] = {}
        for score in SCORE_NAMES:
            mean, low, high = bootstrap_ci(
                method_scores[score], n_boot=n_boot, confidence=confidence, seed=seed, clusters=stimulus_id
            )
            means[score] = mean
            intervals[f"{score}_ci"] = [low, high]
        summary[name] = means | intervals
        if baseline is not None and name != baseline:
            summary[name]["vs_baseline"] = _differences(
                method_scores, scores[baseline], stimulus_id, n_boot, seed, confidence
            )
    return summary


def evaluate_run(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    stimulus_id: ArrayLike,
    settings: EvaluationSettings | None = None,
    progress: Progress = silent,
) -> dict[str, Any]:
    """Everything in metrics.json that the reconstructions file determines, in metrics.json's layout.

    n_test, n_stimuli, repeats_averaged, "ci" (level, resampling unit, n_boot, seed), the baseline and
    the methods. `python -m fmri_eval` on a saved file recomputes exactly this.
    """
    settings = settings or EvaluationSettings()
    n_test = check_images(truth, "truth").shape[0]
    ids = check_stimulus_id(stimulus_id, n_test)
    if ids is None:
        raise EvaluationError("stimulus_id is required; pass one stimulus id per test trial")
    return {
        "n_test": n_test,
        "n_stimuli": int(np.unique(ids).size),
        "repeats_averaged": settings.repeats_averaged,
        "ci": settings.ci_record(resampling_unit(ids)),
        "baseline": settings.baseline,
        "methods": evaluate_reconstructions(
            truth,
            reconstructions,
            ids,
            n_boot=settings.n_boot,
            seed=settings.seed,
            baseline=settings.baseline,
            confidence=settings.level,
            progress=progress,
        ),
    }
