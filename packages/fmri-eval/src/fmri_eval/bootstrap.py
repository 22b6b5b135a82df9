"""Uncertainty over test images: percentile bootstrap CIs and paired method comparisons.

Resampling units are test items (images, or per-reconstruction identification scores), because
the question is how the mean would change with a different draw of test images. NaN marks an
undefined item (e.g. a two-way score with no valid competitor) and is dropped before resampling.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.errors import EvaluationError

_BLOCK_ELEMENTS = 2**22
"""Resample this many values at a time so memory stays bounded for large test sets."""


class PairedComparison(NamedTuple):
    """Mean of values_a - values_b with its bootstrap CI and a sign-flip permutation p-value."""

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def _check_settings(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise EvaluationError(f"need at least 1 resample, got {n_resamples}; pass a positive count")
    if not 0.0 < confidence < 1.0:
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence}; e.g. use 0.95")


def _defined(values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EvaluationError(
            f"values must be 1-D (one per test item), got shape {array.shape}; flatten them"
        )
    finite = array[~np.isnan(array)]
    if finite.size == 0:
        raise EvaluationError("no defined (non-NaN) values to summarise; check the per-item scores")
    if not np.all(np.isfinite(finite)):
        raise EvaluationError("values contain infinities; cap or drop them before summarising")
    return finite


def _resampled_means(values: NDArray[np.float64], n_boot: int, rng: np.random.Generator) -> NDArray:
    n = values.size
    block = max(1, _BLOCK_ELEMENTS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _percentile_interval(samples: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    values: ArrayLike, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of the defined values and its percentile bootstrap interval: (mean, low, high)."""
    _check_settings(n_boot, confidence)
    finite = _defined(values)
    means = _resampled_means(finite, n_boot, np.random.default_rng(seed))
    low, high = _percentile_interval(means, confidence)
    return float(finite.mean()), low, high


def _sign_flip_p_value(
    differences: NDArray[np.float64], n_permutations: int, rng: np.random.Generator
) -> float:
    """Two-sided p-value of a paired sign-flip permutation test of mean difference 0.

    Under the null the two methods are exchangeable per item, so each difference is equally likely
    to have either sign. The observed statistic counts as one permutation, so p is never 0.
    """
    n = differences.size
    observed = abs(differences.mean())
    block = max(1, _BLOCK_ELEMENTS // n)
    as_extreme = 0
    for start in range(0, n_permutations, block):
        stop = min(start + block, n_permutations)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(stop - start, n))
        null = np.abs((signs * differences).mean(axis=1))
        # Relative tolerance so float rounding does not decide ties with the observed value.
        as_extreme += int(np.sum(null >= observed * (1.0 - 1e-12)))
    return (as_extreme + 1) / (n_permutations + 1)


def paired_comparison(
    values_a: ArrayLike,
    values_b: ArrayLike,
    n_boot: int = 2000,
    n_permutations: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two methods on the same test items: is mean(a - b) different from 0?

    The CI is a percentile bootstrap of the mean paired difference; the p-value comes from a
    two-sided sign-flip permutation test. Items where either value is NaN are dropped.
    """
    _check_settings(min(n_boot, n_permutations), confidence)
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise EvaluationError(
            f"paired values have shapes {a.shape} and {b.shape}; pass scores for the same test items"
        )
    differences = _defined(a - b)
    rng = np.random.default_rng(seed)
    low, high = _percentile_interval(_resampled_means(differences, n_boot, rng), confidence)
    p_value = _sign_flip_p_value(differences, n_permutations, rng)
    return PairedComparison(float(differences.mean()), low, high, p_value, int(differences.size))
