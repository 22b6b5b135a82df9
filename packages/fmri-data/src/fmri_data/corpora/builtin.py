"""The corpora that need no file: the simulator's images, random binary patch patterns, random figures drawn
in strokes of patches, and sklearn's digits.

Each comes at the stimulus size, in [0, 1], as float32 [n, size, size]; none is screened here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from fmri_data.corpora.resize import bilinear_weights, resize_images
from fmri_data.errors import DataError
from fmri_data.simulator import image_corpus
from fmri_data.simulator.stimuli import area_overlap

MIYAWAKI_GRID = 10
"""Miyawaki et al. 2008 showed 10x10 patch patterns; the default grid when none is given or detected."""

FIGURE_GRID_MIN = 5
"""The smallest grid a rectangle's outline two patches wide fits with a hole inside."""

_DETECTION_ERROR = 0.02
_DIGIT_BOX, _DIGIT_FRAME = 20, 28  # MNIST's layout: the digit fills 20x20 inside a 28x28 black frame
_UCI_BLOCK = 4  # UCI's 8x8 digits count the ink of 4x4 blocks of a 32x32 bitmap


def simulator_corpus(n: int, image_size: int, seed: int) -> np.ndarray:
    """The simulator's pattern, blob and stroke images, which never draw its test figures."""
    return image_corpus(n, image_size, np.random.default_rng(seed))


def binary_patterns(n: int, image_size: int, grid: int, seed: int) -> np.ndarray:
    """`n` random binary grid x grid patterns, each with its own fill probability in [0.2, 0.8] so that
    sparse and dense stimuli are both covered, rendered bilinearly as the Miyawaki file renders its own."""
    _check_grid("binary-patterns", grid, image_size)
    rng = np.random.default_rng(seed)
    fill = rng.uniform(0.2, 0.8, size=(n, 1, 1))
    patterns = rng.random((n, grid, grid)) < fill
    empty = ~patterns.any(axis=(1, 2))
    while empty.any():
        patterns[empty] = rng.random((int(empty.sum()), grid, grid)) < fill[empty]
        empty = ~patterns.any(axis=(1, 2))
    return render_bilinear(patterns, image_size)


def figure_patterns(n: int, image_size: int, grid: int, seed: int) -> np.ndarray:
    """`n` random figures on the grid x grid patch design, rendered as binary_patterns renders its own.

    Miyawaki et al. 2008 tested on figure images, geometric shapes and letters drawn in strokes one or two
    patches wide, not on random patches. Each figure here is the union of one to three strokes of one width:
    a horizontal or vertical bar, a diagonal, a rectangle's outline or a filled rectangle, each of random
    size and place. No letter or shape is drawn on purpose; unions of strokes cover them as they cover
    much else.
    """
    _check_grid("figures", grid, image_size, smallest=FIGURE_GRID_MIN)
    rng = np.random.default_rng(seed)
    patterns = np.zeros((n, grid, grid), dtype=bool)
    for figure in patterns:  # every stroke turns at least 2 patches on, so no figure is empty
        width = int(rng.integers(1, 3))
        for _ in range(int(rng.choice((1, 2, 3), p=(0.35, 0.4, 0.25)))):
            figure |= _STROKES[int(rng.integers(len(_STROKES)))](grid, width, rng)
    return render_bilinear(patterns, image_size)


def _bar(grid: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A horizontal bar (transposed half the time: vertical), 2 patches to the grid's side long."""
    stroke = np.zeros((grid, grid), dtype=bool)
    length = int(rng.integers(2, grid + 1))
    row, col = int(rng.integers(0, grid - width + 1)), int(rng.integers(0, grid - length + 1))
    stroke[row : row + width, col : col + length] = True
    return stroke if rng.random() < 0.5 else stroke.T


def _diagonal(grid: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A 45-degree line `width` patches wide across (mirrored half the time), 3 to grid - width + 1
    patches long."""
    stroke = np.zeros((grid, grid), dtype=bool)
    length = int(rng.integers(3, grid - width + 2))
    row, col = int(rng.integers(0, grid - length + 1)), int(rng.integers(0, grid - length - width + 2))
    steps = np.arange(length)
    for offset in range(width):
        stroke[row + steps, col + offset + steps] = True
    return stroke if rng.random() < 0.5 else stroke[:, ::-1]


def _rectangle(grid: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A rectangle's outline, its sides `width` patches wide, at least one patch of hole inside."""
    stroke = np.zeros((grid, grid), dtype=bool)
    height, breadth = (int(rng.integers(2 * width + 1, grid + 1)) for _ in range(2))
    row, col = int(rng.integers(0, grid - height + 1)), int(rng.integers(0, grid - breadth + 1))
    stroke[row : row + height, col : col + breadth] = True
    stroke[row + width : row + height - width, col + width : col + breadth - width] = False
    return stroke


def _block(grid: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A filled rectangle, 2 patches to half the grid on each side (`width` plays no part)."""
    stroke = np.zeros((grid, grid), dtype=bool)
    height, breadth = (int(rng.integers(2, grid // 2 + 1)) for _ in range(2))
    row, col = int(rng.integers(0, grid - height + 1)), int(rng.integers(0, grid - breadth + 1))
    stroke[row : row + height, col : col + breadth] = True
    return stroke


_STROKES = (_bar, _diagonal, _rectangle, _block)


def _check_grid(name: str, grid: int, image_size: int, smallest: int = 2) -> None:
    """One refusal for every grid-drawn corpus: the grid must fit the image and hold the corpus's shapes."""
    if not smallest <= grid <= image_size:
        raise DataError(
            f"{name}: the grid must lie between {smallest} and the image size ({image_size}), got {grid}; "
            f"write {name}:K with a K in that range"
        )


def digits(image_size: int) -> np.ndarray:
    """scikit-learn's 1,797 bundled handwritten digits (UCI's, not MNIST), drawn as MNIST draws its digits.

    UCI stored each 32x32 binary bitmap as the ink count of its 4x4 blocks (the 8x8 images). Upsampled as
    they are, they are blurry blobs, and a prior learned from blobs cannot draw MNIST's sharp strokes (the
    small base model's autoencoder drew digit69's stimuli at SSIM 0.58 from blobs, 0.77 from bitmaps;
    benchmarks/autoencoder_ceiling.py). So each is first turned back into a bitmap (cubic upsampling to
    32x32, thresholded to keep the ink the counts hold), then laid out by MNIST's recipe: its bounding box
    scaled to fit 20x20 with the aspect ratio kept (area averaging: anti-aliased edges), placed in a 28x28
    black frame with its centre of mass at the centre; last, resized to `image_size` (area averaging to
    shrink, bilinear to enlarge).
    """
    from sklearn.datasets import load_digits  # slow to import, so only when asked for

    counts = load_digits().images / 16.0
    framed = np.stack([_mnist_layout(_bitmap(count)) for count in counts])
    if image_size != _DIGIT_FRAME:
        framed = resize_images(framed, image_size)
    return np.clip(framed, 0.0, 1.0).astype(np.float32)


def _bitmap(counts: np.ndarray) -> np.ndarray:
    """An 8x8 image of 4x4-block ink fractions -> the 32x32 binary bitmap with as much ink."""
    smooth = ndimage.zoom(counts, _UCI_BLOCK, order=3, mode="nearest", grid_mode=True)
    level = np.quantile(smooth, 1.0 - counts.mean())
    return (smooth > level).astype(np.float64)


def _mnist_layout(bitmap: np.ndarray) -> np.ndarray:
    """A binary bitmap -> MNIST's 28x28 layout: bounding box into 20x20 (aspect kept), centre of mass at
    the centre (rounded to whole pixels, as far as the frame allows)."""
    rows, cols = np.nonzero(bitmap)
    box = bitmap[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    side = max(box.shape)
    square = np.zeros((side, side))
    top, left = (side - box.shape[0]) // 2, (side - box.shape[1]) // 2
    square[top : top + box.shape[0], left : left + box.shape[1]] = box
    digit = resize_images(square[None], _DIGIT_BOX)[0]
    centre = np.array(ndimage.center_of_mass(digit))
    corner = np.clip(np.round(_DIGIT_FRAME / 2 - centre).astype(int), 0, _DIGIT_FRAME - _DIGIT_BOX)
    frame = np.zeros((_DIGIT_FRAME, _DIGIT_FRAME))
    frame[corner[0] : corner[0] + _DIGIT_BOX, corner[1] : corner[1] + _DIGIT_BOX] = digit
    return frame


def render_bilinear(patterns: np.ndarray, image_size: int) -> np.ndarray:
    """[n, K, K] patterns -> [n, image_size, image_size] float32, as skimage.transform.resize(order=1)."""
    weights = bilinear_weights(image_size, np.shape(patterns)[-1])
    images = weights @ np.asarray(patterns, dtype=np.float64) @ weights.T
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def detect_patch_grid(images: np.ndarray, candidates: Iterable[int] = range(4, 17)) -> int | None:
    """The K of the K x K binary-patch design the images were rendered from (bilinearly), or None.

    Each candidate K is tried by area-averaging the images down to K x K, thresholding at 0.5 and rendering
    again; the K that reproduces the images best wins if its mean absolute error is below 0.02.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or len(images) == 0:
        raise DataError(f"detect_patch_grid: images must be a non-empty [n, H, H] stack, got {images.shape}")
    size = images.shape[1]
    errors = {}
    for grid in candidates:
        if 2 <= grid <= size:
            down = area_overlap(grid, size)
            patterns = (down @ images @ down.T) >= 0.5
            errors[grid] = float(np.abs(render_bilinear(patterns, size) - images).mean())
    best = min(errors, key=errors.__getitem__, default=None)
    return best if best is not None and errors[best] < _DETECTION_ERROR else None
