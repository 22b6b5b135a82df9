"""Image conversions shared by the loaders: flat rows to 2-D images, value scaling, nearest upsampling."""

from __future__ import annotations

import math

import numpy as np

from fmri_data.errors import DataError


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 images become [0, 1] floats; others stay as they are, for the container's range check.

    Only uint8 is rescaled because other integer or float images carry no reliable scale: guessing would hide
    a wrong file instead of reporting it.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def square_side(n_values: int, where: str) -> int:
    """The side s of a square image with s*s = n_values, or a DataError saying the rows are not square."""
    side = math.isqrt(n_values)
    if side * side != n_values or side == 0:
        raise DataError(
            f"{where}: each row holds {n_values} values, which is not a square image (s*s); "
            "only square images are supported, crop or pad them first"
        )
    return side


def rows_to_images(rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Turn [n, h*w] rows stored column-major (MATLAB order) into upright [n, h, w] images."""
    rows = np.asarray(rows)
    return rows.reshape(rows.shape[0], shape[1], shape[0]).transpose(0, 2, 1)


def upsample_nearest(images: np.ndarray, size: int) -> np.ndarray:
    """Resize [n, h, w] images to [n, size, size] by nearest neighbour, which keeps binary patterns binary."""
    _, h, w = images.shape
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return images[:, rows[:, None], cols[None, :]]
