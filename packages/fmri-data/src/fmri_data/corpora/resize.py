"""Resizing image stacks with numpy alone: bilinear to enlarge, area averaging to shrink.

The bilinear weights follow skimage.transform.resize(order=1) with its default mode ('reflect', which scipy
calls 'mirror') so that rendering a 10x10 patch pattern at 28x28 reproduces the Miyawaki file's stimuli
bit for bit, without making scikit-image a dependency of fmri-data.
"""

from __future__ import annotations

import numpy as np

from fmri_data.simulator.stimuli import area_overlap


def bilinear_weights(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in]: linear interpolation weights with pixel centres at (i + 0.5) * n_in / n_out - 0.5.

    Samples outside the input reflect about the first and last pixel centre (x[-1] = x[1]), as
    skimage.transform.resize(order=1) does by default.
    """
    coords = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    low = np.floor(coords).astype(np.int64)
    frac = coords - low
    weights = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    for index, weight in ((low, 1.0 - frac), (low + 1, frac)):
        np.add.at(weights, (rows, _mirror(index, n_in)), weight)
    return weights


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """[n, H, W] -> [n, size, size] float64, each axis bilinear when enlarged and area-averaged when shrunk.

    Area averaging when shrinking is the anti-aliased choice: every input pixel counts, none is skipped.
    """
    images = np.asarray(images, dtype=np.float64)
    rows = _weights(size, images.shape[1])
    cols = _weights(size, images.shape[2])
    return rows @ images @ cols.T


def _weights(n_out: int, n_in: int) -> np.ndarray:
    return bilinear_weights(n_out, n_in) if n_out >= n_in else area_overlap(n_out, n_in)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample reflection of indices into [0, n): -1 -> 1, n -> n - 2 (a single pixel stays put)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)
