"""The voxels' noise model of a Gaussian likelihood: independent, or correlated between voxels.

A likelihood that treats voxels as independent counts shared noise (and an encoding model's shared misfit)
once per voxel, so it overstates what a pattern says; Bayesian decoders of this field model the noise's
correlations instead (van Bergen et al. 2015). With ~100 trials and hundreds of voxels the residuals'
sample correlations are singular, so they are shrunk toward none by Ledoit-Wolf's rule.
"""

from __future__ import annotations

import numpy as np

from fmri_data.errors import DataError

NOISE_MODELS = ("independent", "correlated")
"""independent: each voxel's own noise variance; correlated: the same variances with the residuals'
correlations between voxels, shrunk toward none (Ledoit-Wolf)."""


def check_noise_models(models: tuple[str, ...], option: str) -> None:
    """Refuse an unknown noise model in one line that names the `option` to set."""
    unknown = [model for model in models if model not in NOISE_MODELS]
    if unknown:
        raise DataError(
            f"{option} must be one of {', '.join(NOISE_MODELS)}, got {', '.join(map(str, unknown))}; "
            f"e.g. --choose {option}={','.join(NOISE_MODELS)}"
        )


def correlated_noise_precision(residuals: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """[voxels, voxels]: the inverse of the noise covariance with the given per-voxel `variances` and the
    correlations of the `residuals` [n, voxels], shrunk toward none by Ledoit-Wolf's rule."""
    from sklearn.covariance import ledoit_wolf

    residuals = np.asarray(residuals, dtype=np.float64)
    if len(residuals) < 2:  # no correlation to estimate
        return np.diag(1 / np.asarray(variances, dtype=np.float64))
    standardised = (residuals - residuals.mean(axis=0)) / np.maximum(residuals.std(axis=0), 1e-12)
    correlation, _ = ledoit_wolf(standardised, assume_centered=True)
    np.fill_diagonal(correlation, 1.0)  # each voxel keeps its variance, also beside a constant (all-zero) one
    scale = np.sqrt(variances)
    precision = np.linalg.solve(correlation * np.outer(scale, scale), np.eye(len(scale)))
    return (precision + precision.T) / 2
