"""Input checks shared by all modules, so every bad input fails early with an EvaluationError."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.errors import EvaluationError


def is_colour(images: NDArray) -> bool:
    """Whether a checked image stack is colour ([n, H, W, 3], RGB last) rather than grayscale ([n, H, W])."""
    return images.ndim == 4


def check_images(images: ArrayLike, name: str = "images") -> NDArray[np.float64]:
    """Return `images` as float64 [n, H, W] (grayscale) or [n, H, W, 3] (RGB, as NSD's stimuli), refusing
    anything the [0, 1] image metrics would misread."""
    array = np.asarray(images)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise EvaluationError(f"{name} must be a numeric array, got dtype {array.dtype}; pass float images")
    shaped = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)
    if not shaped or array.shape[0] == 0:
        raise EvaluationError(
            f"{name} must have shape [n, H, W] (grayscale) or [n, H, W, 3] (RGB, channels last) with n >= 1, "
            f"got {array.shape}; stack the images with their channels last"
        )
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise EvaluationError(f"{name} contains NaN or infinite values; fix or drop those images")
    if array.min() < 0.0 or array.max() > 1.0:
        raise EvaluationError(
            f"{name} has values in [{array.min():.4g}, {array.max():.4g}] but must lie in [0, 1]; "
            "clip or rescale before evaluating"
        )
    return array


def check_image_pair(
    truth: ArrayLike, recon: ArrayLike, recon_name: str = "recon"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Check both image stacks and that they describe the same images pixel for pixel."""
    truth_arr = check_images(truth, "truth")
    recon_arr = check_images(recon, recon_name)
    if truth_arr.shape != recon_arr.shape:
        raise EvaluationError(
            f"{recon_name} has shape {recon_arr.shape} but truth has {truth_arr.shape}; "
            "pass one reconstruction per truth image at the same size"
        )
    return truth_arr, recon_arr


def check_feature_pair(
    truth_features: ArrayLike, recon_features: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Flatten [n, ...] features to [n, d] float64 after checking they pair up and are finite."""
    truth_arr = np.asarray(truth_features, dtype=np.float64)
    recon_arr = np.asarray(recon_features, dtype=np.float64)
    if truth_arr.ndim < 2 or truth_arr.shape[0] < 2:
        raise EvaluationError(
            f"identification needs features [n, ...] with n >= 2 items, got shape {truth_arr.shape}; "
            "evaluate on more test trials"
        )
    if truth_arr.shape != recon_arr.shape:
        raise EvaluationError(
            f"reconstruction features have shape {recon_arr.shape} but truth features have "
            f"{truth_arr.shape}; compute both with the same feature extractor"
        )
    if not (np.all(np.isfinite(truth_arr)) and np.all(np.isfinite(recon_arr))):
        raise EvaluationError("features contain NaN or infinite values; fix or drop those items")
    n = truth_arr.shape[0]
    return truth_arr.reshape(n, -1), recon_arr.reshape(n, -1)


def check_stimulus_id(stimulus_id: ArrayLike | None, n: int) -> NDArray | None:
    """Return stimulus ids as a 1-D array of length n (or None), so pairs can be compared with ==."""
    if stimulus_id is None:
        return None
    ids = np.asarray(stimulus_id)
    if ids.dtype == object:
        raise EvaluationError("stimulus_id must be a numeric or string array, not objects; convert it first")
    if ids.shape != (n,):
        raise EvaluationError(
            f"stimulus_id has shape {ids.shape} but {n} items were given; pass one id per test trial"
        )
    return ids
