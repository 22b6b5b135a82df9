"""Evaluate several reconstruction methods on one test set, with CIs and paired comparisons."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.bootstrap import bootstrap_ci, paired_comparison
from fmri_eval.errors import EvaluationError
from fmri_eval.identification import twoway_identification
from fmri_eval.metrics import image_metrics
from fmri_eval.validation import check_image_pair, check_images, check_stimulus_id

SCORE_NAMES = ("pcc", "ssim", "mse", "psnr", "twoway")


def item_scores(
    truth: ArrayLike, recon: ArrayLike, stimulus_id: ArrayLike | None = None
) -> dict[str, NDArray[np.float64]]:
    """Per-trial scores keyed by SCORE_NAMES; twoway is per reconstruction on pixels (NaN if undefined)."""
    truth_arr, recon_arr = check_image_pair(truth, recon)
    scores = image_metrics(truth_arr, recon_arr)
    scores["twoway"] = twoway_identification(truth_arr, recon_arr, stimulus_id).per_item
    return scores


def _scores_by_method(
    truth: ArrayLike, reconstructions: Mapping[str, ArrayLike], stimulus_id: ArrayLike | None
) -> dict[str, dict[str, NDArray[np.float64]]]:
    if not reconstructions:
        raise EvaluationError("no reconstructions given; pass at least one method name -> images")
    truth_arr = check_images(truth, "truth")
    check_stimulus_id(stimulus_id, truth_arr.shape[0])
    scores = {}
    for name, recon in reconstructions.items():
        _, recon_arr = check_image_pair(truth_arr, recon, recon_name=f"reconstructions[{name!r}]")
        scores[name] = item_scores(truth_arr, recon_arr, stimulus_id)
    return scores


def evaluate_reconstructions(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    stimulus_id: ArrayLike | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, float | list[float]]]:
    """Mean of each score over all test trials, plus "<score>_ci": [low, high] (95% percentile bootstrap).

    Two-way identification runs on pixels and, given `stimulus_id`, ignores competitors showing the
    same stimulus; its CI resamples the per-reconstruction scores.
    """
    summary: dict[str, dict[str, float | list[float]]] = {}
    for name, scores in _scores_by_method(truth, reconstructions, stimulus_id).items():
        means: dict[str, float | list[float]] = {}
        intervals: dict[str, float | list[float]] = {}
        for score in SCORE_NAMES:
            mean, low, high = bootstrap_ci(scores[score], n_boot=n_boot, seed=seed)
            means[score] = mean
            intervals[f"{score}_ci"] = [low, high]
        summary[name] = means | intervals
    return summary


def compare_to_reference(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    reference: str,
    stimulus_id: ArrayLike | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float | list[float]]]]:
    """Paired comparison of every other method against `reference` (e.g. "ridge") on each score.

    Returns {method: {score: {"difference": mean(method - reference), "ci": [low, high],
    "p_value": ...}}}; see `paired_comparison` for the bootstrap CI and sign-flip p-value.
    For mse lower is better, so a negative difference favours the method.
    """
    if reference not in reconstructions:
        raise EvaluationError(
            f"reference method {reference!r} is not among {sorted(reconstructions)}; pass one of those"
        )
    scores = _scores_by_method(truth, reconstructions, stimulus_id)
    comparisons: dict[str, dict[str, dict[str, float | list[float]]]] = {}
    for name in scores:
        if name == reference:
            continue
        comparisons[name] = {}
        for score in SCORE_NAMES:
            result = paired_comparison(
                scores[name][score], scores[reference][score], n_boot=n_boot, seed=seed
            )
            comparisons[name][score] = {
                "difference": result.mean_difference,
                "ci": [result.ci_low, result.ci_high],
                "p_value": result.p_value,
            }
    return comparisons
