"""Per-image similarity between true and reconstructed images (arrays [n, H, W], or [n, H, W, 3] in RGB, in
[0, 1]).

Colour images are scored as the NSD literature scores them (Ozcelik & VanRullen 2023's evaluation): pixel
correlation and errors over all three channels, SSIM on their luminance (skimage's rgb2gray).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from fmri_eval.correlation import standardize_rows
from fmri_eval.errors import EvaluationError
from fmri_eval.validation import check_image_pair, is_colour

PSNR_CAP_DB = 100.0
"""PSNR ceiling in dB: identical images (mse == 0) would otherwise give +inf and break means."""

SSIM_MIN_SIZE = 11
"""Smallest image side SSIM accepts: the Gaussian window (sigma 1.5, truncate 3.5) is 11 pixels wide."""

METRIC_NAMES = ("pcc", "ssim", "mse", "psnr")


def pcc(truth: ArrayLike, recon: ArrayLike) -> NDArray[np.float64]:
    """Pearson correlation of the pixels of each image pair, shape [n].

    Correlation is undefined when either image is constant; such pairs score 0.0
    (no linear agreement) instead of NaN, so a blank reconstruction is not silently dropped.
    """
    truth_arr, recon_arr = check_image_pair(truth, recon)
    n = truth_arr.shape[0]
    truth_z = standardize_rows(truth_arr.reshape(n, -1))
    recon_z = standardize_rows(recon_arr.reshape(n, -1))
    return np.sum(truth_z * recon_z, axis=1)


def mse(truth: ArrayLike, recon: ArrayLike) -> NDArray[np.float64]:
    """Mean squared pixel error of each image pair, shape [n]."""
    truth_arr, recon_arr = check_image_pair(truth, recon)
    return np.mean((truth_arr - recon_arr) ** 2, axis=tuple(range(1, truth_arr.ndim)))


def psnr(truth: ArrayLike, recon: ArrayLike) -> NDArray[np.float64]:
    """Peak signal-to-noise ratio 10*log10(1/mse) in dB (data range 1), capped at PSNR_CAP_DB."""
    errors = mse(truth, recon)
    floor = 10.0 ** (-PSNR_CAP_DB / 10.0)
    return 10.0 * np.log10(1.0 / np.maximum(errors, floor))


def ssim(truth: ArrayLike, recon: ArrayLike) -> NDArray[np.float64]:
    """Mean SSIM of each image pair, shape [n], with Wang et al. (2004) settings.

    Gaussian window sigma 1.5, population covariance, data range 1; skimage averages the SSIM map
    after cropping a 5-pixel border, so images need at least SSIM_MIN_SIZE pixels per side. Colour images
    are compared by their luminance, as the NSD literature's tables are.
    """
    truth_arr, recon_arr = check_image_pair(truth, recon)
    if is_colour(truth_arr):
        truth_arr, recon_arr = rgb2gray(truth_arr), rgb2gray(recon_arr)
    height, width = truth_arr.shape[1:]
    if min(height, width) < SSIM_MIN_SIZE:
        raise EvaluationError(
            f"ssim needs images of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels, got {height}x{width}; "
            "evaluate at a larger resolution"
        )
    return np.array(
        [
            structural_similarity(
                t,
                r,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for t, r in zip(truth_arr, recon_arr, strict=True)
        ],
        dtype=np.float64,
    )


def image_metrics(truth: ArrayLike, recon: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """All per-image metrics as name -> [n] array, keyed by METRIC_NAMES."""
    truth_arr, recon_arr = check_image_pair(truth, recon)
    return {
        "pcc": pcc(truth_arr, recon_arr),
        "ssim": ssim(truth_arr, recon_arr),
        "mse": mse(truth_arr, recon_arr),
        "psnr": psnr(truth_arr, recon_arr),
    }


SELECTION_CRITERION = "mean pcc + mean ssim over the validation trials"
"""What `selection_score` measures, in the words a report prints beside a choice made with it."""


def selection_score(truth: ArrayLike, recon: ArrayLike) -> float:
    """One number to choose a method's settings by on validation trials (never test trials): mean pcc +
    mean SSIM, so neither a blurry mean (good pcc) nor sharp wrong detail (good SSIM alone) wins."""
    return float(np.mean(pcc(truth, recon)) + np.mean(ssim(truth, recon)))
