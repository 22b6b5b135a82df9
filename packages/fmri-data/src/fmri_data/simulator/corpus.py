"""An image corpus for pre-training generative priors without any fMRI: patterns, blobs and strokes.

A diffusion model pre-trained here plays the part a web-scale pretrained model plays for natural images: it
knows what "images of this domain" look like before it sees a single trial. The corpus must never contain a
test stimulus, so it holds no drawn shapes or letters (the Miyawaki test figures are shapes and letters);
instead it holds random patch patterns of varied density, smooth random blobs and random polyline strokes,
and any image that happens to equal one of the simulator's figures is redrawn.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from scipy.ndimage import gaussian_filter

from fmri_data.errors import DataError
from fmri_data.simulator.stimuli import BASE_GRID, figure_patterns, render_patterns

KINDS = ("patterns", "blobs", "strokes")


def image_corpus(n: int, image_size: int, rng: np.random.Generator, *, grid: int = BASE_GRID) -> np.ndarray:
    """`n` images [n, image_size, image_size] float32 in [0, 1], a third of each kind in KINDS.

    Drawn on a `grid` x `grid` patch grid like the simulator's stimuli (a coarser one for images smaller
    than the grid) and rendered the same way.
    """
    if n < 1:
        raise DataError(f"image corpus: n must be at least 1, got {n}")
    grid = min(grid, image_size)
    figures = figure_patterns(grid).values() if grid >= BASE_GRID else ()  # too coarse to draw them
    banned = {p.astype(bool).tobytes() for p in figures}
    draw = {"patterns": _pattern, "blobs": _blob, "strokes": _strokes}
    patterns = np.empty((n, grid, grid), dtype=np.float32)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        pattern = draw[kind](grid, rng)
        while pattern.tobytes() in banned or not pattern.any():
            pattern = draw[kind](grid, rng)
        patterns[i] = pattern
    return render_patterns(patterns, image_size)


def _pattern(grid: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((grid, grid)) < rng.uniform(0.2, 0.8)


def _blob(grid: int, rng: np.random.Generator) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal((grid, grid)), sigma=rng.uniform(0.8, 2.5), mode="wrap")
    return field > np.quantile(field, rng.uniform(0.4, 0.85))


def _strokes(grid: int, rng: np.random.Generator) -> np.ndarray:
    """A random polyline of 2-4 segments, one or two patches wide."""
    canvas = np.zeros((grid, grid), dtype=bool)
    points = rng.uniform(0, grid - 1, size=(rng.integers(3, 6), 2))
    width = int(rng.integers(1, 3))
    for start, end in pairwise(points):
        for t in np.linspace(0.0, 1.0, 4 * grid):
            row, col = np.round(start + t * (end - start)).astype(int)
            canvas[row : row + width, col : col + width] = True
    return canvas
