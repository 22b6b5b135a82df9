"""Metrics in fMRI space: how well reconstructed or generated voxel patterns match measured ones.

Inputs are [n_samples, n_voxels]. Reconstruction metrics compare paired rows (truth[i] with estimate[i]);
distribution metrics (`distribution_metrics`) compare two unpaired sets, e.g. generated samples with held-out
data. Everything returns plain floats, so the result drops into metrics.json as it is.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from scipy.spatial.distance import jensenshannon

from fmri_eval.correlation import standardize_rows
from fmri_eval.errors import EvaluationError


def _pair(truth: ArrayLike, estimate: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    truth, estimate = np.asarray(truth, np.float64), np.asarray(estimate, np.float64)
    if truth.ndim != 2 or truth.shape != estimate.shape:
        raise EvaluationError(
            f"fMRI metrics need two [n_samples, n_voxels] arrays of one shape, got {truth.shape} and "
            f"{estimate.shape}"
        )
    return truth, estimate


def _rowwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of a with the same row of b (0 where a row is constant)."""
    return (standardize_rows(a) * standardize_rows(b)).sum(1)


def reconstruction_metrics(truth: ArrayLike, estimate: ArrayLike) -> dict[str, float]:
    """Paired agreement: Pearson r overall / per voxel / per sample, MSE, RMSE, MAE, R², SNR and PSNR (dB)."""
    truth, estimate = _pair(truth, estimate)
    error = estimate - truth
    mse = float(np.mean(error**2))
    signal_power = float(np.mean(truth**2))
    value_range = float(truth.max() - truth.min())
    residual, total = float((error**2).sum()), float(((truth - truth.mean(0)) ** 2).sum())
    return {
        "pearson_overall": float(np.corrcoef(truth.ravel(), estimate.ravel())[0, 1]),
        "pearson_voxelwise_mean": float(_rowwise_r(truth.T, estimate.T).mean()),
        "pearson_samplewise_mean": float(_rowwise_r(truth, estimate).mean()),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - residual / total if total > 0 else float("nan"),
        "snr_db": float(10 * np.log10(signal_power / mse)) if mse > 0 else float("inf"),
        "psnr_db": float(10 * np.log10(value_range**2 / mse)) if mse > 0 else float("inf"),
    }


def moments(x: ArrayLike) -> dict[str, float]:
    """Mean, standard deviation, skewness and excess kurtosis of all values."""
    values = np.asarray(x, np.float64).ravel()
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "skewness": float(stats.skew(values)),
        "kurtosis": float(stats.kurtosis(values)),
    }


def distribution_metrics(reference: ArrayLike, samples: ArrayLike, *, bins: int = 50) -> dict[str, float]:
    """Unpaired match of two sets of patterns [n, voxels] (n may differ; voxels must agree).

    ks_statistic: the two-sample Kolmogorov-Smirnov statistic of all values; jsd: the Jensen-Shannon
    divergence (base 2, in [0, 1]) of their histograms on shared bins; correlation_structure_r: how well
    the voxel-voxel correlation matrix is preserved (Pearson r of the two matrices' upper triangles);
    plus the difference in mean and std.
    """
    reference, samples = np.asarray(reference, np.float64), np.asarray(samples, np.float64)
    if reference.ndim != 2 or samples.ndim != 2 or reference.shape[1] != samples.shape[1]:
        raise EvaluationError(
            f"distribution metrics need [n, voxels] arrays with the same voxels, got {reference.shape} "
            f"and {samples.shape}"
        )
    edges = np.histogram_bin_edges(np.concatenate([reference.ravel(), samples.ravel()]), bins=bins)
    p, _ = np.histogram(reference, edges)
    q, _ = np.histogram(samples, edges)
    upper = np.triu_indices(reference.shape[1], k=1)
    structure = np.corrcoef(
        np.corrcoef(reference, rowvar=False)[upper], np.corrcoef(samples, rowvar=False)[upper]
    )[0, 1]
    return {
        "ks_statistic": float(stats.ks_2samp(reference.ravel(), samples.ravel()).statistic),
        "jsd": float(jensenshannon(p, q, base=2) ** 2),
        "correlation_structure_r": float(structure),
        "mean_difference": float(samples.mean() - reference.mean()),
        "std_difference": float(samples.std() - reference.std()),
    }
