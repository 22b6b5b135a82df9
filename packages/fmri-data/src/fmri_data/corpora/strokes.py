"""Digits drawn again with a pen of MNIST's width, in another slant: the `digit-strokes` corpus's drawing.

UCI's bitmaps, drawn back from their 4x4 ink counts (builtin.digits), have thick strokes, where MNIST's
are about 2 to 3 pixels wide at 28x28, and a prior learned from fat strokes draws fat strokes. Each digit
here is warped at random (rotation, slant, width), thinned to its skeleton and drawn again along it with a
round pen whose width, once the digit is laid out as MNIST lays out its digits, is drawn from MNIST's
range. A loop UCI's counts filled in stays filled (its skeleton is a line).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_DIGIT_PX = 96  # the bitmap is warped and redrawn at this size, then area-averaged down by the layout
_MARGIN_PX = 40  # room for the warp (a corner moves up to 80 px from the centre, 48 before) and the pen
_MAX_ROTATION_DEG = 15.0
_MAX_SHEAR = 0.3  # slant: x moves by this much per unit of y
_WIDTH_SCALE = (0.85, 1.15)
_PEN_WIDTH_PX = (1.8, 3.2)  # once laid out, where the digit's longer side spans `box` pixels


def pen_redrawn(bitmap: np.ndarray, rng: np.random.Generator, box: int) -> np.ndarray:
    """A binary digit bitmap with ink, warped and drawn again along its skeleton with a round pen, on a
    canvas of _DIGIT_PX plus margins; the pen is as wide, relative to the digit, as MNIST's once the
    drawing's longer side is scaled to `box` pixels (MNIST's layout, builtin.digit_strokes)."""
    from skimage.morphology import skeletonize  # slow to import, so only when asked for

    ink = ndimage.zoom(bitmap.astype(np.float64), _DIGIT_PX / bitmap.shape[0], order=1) > 0.5
    skeleton = skeletonize(_warped(np.pad(ink, _MARGIN_PX), rng))
    rows, cols = np.nonzero(skeleton)
    extent = max(np.ptp(rows), np.ptp(cols)) + 1
    laid_out = rng.uniform(*_PEN_WIDTH_PX)
    width = laid_out * extent / (box - laid_out)  # the pen widens the drawing by its width, too
    reach = (width - 1) / 2  # from the skeleton's centre line: a stroke `width` pixels across
    return (ndimage.distance_transform_edt(~skeleton) <= reach).astype(np.float64)


def _warped(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ink rotated, slanted and made wider or narrower about the canvas centre."""
    angle = np.deg2rad(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG))
    shear = rng.uniform(-_MAX_SHEAR, _MAX_SHEAR)
    width = rng.uniform(*_WIDTH_SCALE)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rotation @ np.array([[1.0, 0.0], [shear, 1.0]]) @ np.diag([1.0, width])
    inverse = np.linalg.inv(forward)
    centre = np.array(ink.shape) / 2
    moved = ndimage.affine_transform(
        ink.astype(np.float64), inverse, offset=centre - inverse @ centre, order=1
    )
    return moved > 0.5
