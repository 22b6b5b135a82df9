"""Uncertainty over test stimuli: percentile bootstrap CIs and paired method comparisons.

The question a CI answers is how the mean would change with another draw of test *images*. When a
stimulus was shown in several test trials (Miyawaki: 20 images over 119 trials), those trials are not
independent draws, so the bootstrap resamples stimuli and takes all trials of a drawn stimulus along
(a cluster bootstrap). With one trial per stimulus this is exactly the plain bootstrap over trials.
NaN marks an undefined item (e.g. a two-way score with no valid competitor) and is dropped first.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.errors import EvaluationError

_BLOCK_ELEMENTS = 2**22
"""Resample this many values at a time so memory stays bounded for large test sets."""

ResamplingUnit = Literal["stimulus", "trial"]


class PairedComparison(NamedTuple):
    """Mean of values_a - values_b over the same items, its bootstrap CI and two-sided bootstrap p-value."""

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def resampling_unit(clusters: ArrayLike | None) -> ResamplingUnit:
    """ "stimulus" when some stimulus id occurs in more than one trial, else "trial" (the plain bootstrap)."""
    if clusters is None:
        return "trial"
    ids = np.asarray(clusters)
    return "stimulus" if np.unique(ids).size < ids.size else "trial"


def check_bootstrap_settings(n_boot: int, confidence: float) -> None:
    """Refuse resample counts and confidence levels that would give a meaningless interval."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise EvaluationError(f"need at least 1 bootstrap resample, got {n_boot!r}; pass e.g. n_boot=2000")
    if not 0.0 < confidence < 1.0:
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence}; e.g. use 0.95")


def _cluster_codes(clusters: ArrayLike | None, n: int) -> NDArray[np.intp]:
    """Cluster number of each item, numbered in order of first appearance.

    First-appearance order makes distinct stimuli number 0..n-1 in trial order, so their cluster
    bootstrap draws exactly what the plain bootstrap over trials draws.
    """
    if clusters is None:
        return np.arange(n)
    ids = np.asarray(clusters)
    if ids.shape != (n,):
        raise EvaluationError(
            f"cluster ids have shape {ids.shape} but {n} values were given; pass one stimulus id per item"
        )
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)]


def _cluster_totals(
    values: ArrayLike, clusters: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sum and count of the defined values of each cluster; clusters with no defined value are dropped."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EvaluationError(
            f"values must be 1-D (one per test item), got shape {array.shape}; flatten them"
        )
    codes = _cluster_codes(clusters, array.size)
    defined = ~np.isnan(array)
    if not defined.any():
        raise EvaluationError("no defined (non-NaN) values to summarise; check the per-item scores")
    if not np.all(np.isfinite(array[defined])):
        raise EvaluationError("values contain infinities; cap or drop them before summarising")
    _, kept = np.unique(codes[defined], return_inverse=True)  # renumber, keeping first-appearance order
    sums = np.bincount(kept, weights=array[defined])
    counts = np.bincount(kept).astype(np.float64)
    return sums, counts


def _resampled_means(
    sums: NDArray[np.float64], counts: NDArray[np.float64], n_boot: int, seed: int
) -> NDArray[np.float64]:
    """Means over the trials of `n_boot` resamples of the clusters, drawn with replacement."""
    rng = np.random.default_rng(seed)
    k = sums.size
    block = max(1, _BLOCK_ELEMENTS // k)
    means = np.empty(n_boot)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        drawn = rng.integers(0, k, size=(stop - start, k))
        means[start:stop] = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    return means


def _percentile_interval(samples: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    values: ArrayLike,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """Mean of the defined values and its percentile bootstrap interval: (mean, low, high).

    `clusters` (e.g. the stimulus id of each trial) makes the bootstrap resample whole clusters.
    """
    check_bootstrap_settings(n_boot, confidence)
    sums, counts = _cluster_totals(values, clusters)
    low, high = _percentile_interval(_resampled_means(sums, counts, n_boot, seed), confidence)
    return float(sums.sum() / counts.sum()), low, high


def _bootstrap_p_value(resampled: NDArray[np.float64]) -> float:
    """Two-sided p-value of "mean difference = 0" by inverting the percentile interval.

    p = 2 * min(share of resamples <= 0, share >= 0), each count plus one so that p is never 0 and
    identical methods (every resample exactly 0) get p = 1. The interval at level 1 - alpha excludes
    0 about when p < alpha, so the table's marks and the p-values tell the same story.
    """
    n = resampled.size
    below = np.count_nonzero(resampled <= 0.0) + 1
    above = np.count_nonzero(resampled >= 0.0) + 1
    return float(min(1.0, 2.0 * min(below, above) / (n + 1)))


def paired_comparison(
    values_a: ArrayLike,
    values_b: ArrayLike,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: ArrayLike | None = None,
) -> PairedComparison:
    """Compare two methods on the same test items: is mean(a - b) different from 0?

    The differences are resampled (by cluster when `clusters` is given), so both methods always see
    the same drawn stimuli; the CI is the percentile interval of the resampled mean difference and
    the p-value comes from the same resamples. Items where either value is NaN are dropped.
    """
    check_bootstrap_settings(n_boot, confidence)
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise EvaluationError(
            f"paired values have shapes {a.shape} and {b.shape}; pass scores for the same test items"
        )
    sums, counts = _cluster_totals(a - b, clusters)
    resampled = _resampled_means(sums, counts, n_boot, seed)
    low, high = _percentile_interval(resampled, confidence)
    return PairedComparison(
        float(sums.sum() / counts.sum()), low, high, _bootstrap_p_value(resampled), int(counts.sum())
    )
