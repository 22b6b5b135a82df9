"""Stimuli of the Miyawaki et al. (2008) design: random binary patch patterns and figure images.

Patterns are [grid, grid] float32 arrays of 0/1 patch contrasts; `render_patterns` turns them into images.
The figures are drawn on a 10x10 base (Miyawaki's grid) so that they look the same at every grid size.
"""

from __future__ import annotations

import numpy as np

from fmri_data.errors import DataError

BASE_GRID = 10

# Test figures on the 10x10 base grid, in label order (label = index + 1). 'n' occurs twice in "neuron"
# but is one stimulus; 'u' is 'n' mirrored top to bottom.
_FIGURES: dict[str, tuple[str, ...]] = {
    "square": (
        "..........",
        "..........",
        "..######..",
        "..######..",
        "..######..",
        "..######..",
        "..######..",
        "..######..",
        "..........",
        "..........",
    ),
    "frame": (
        "..........",
        ".########.",
        ".#......#.",
        ".#......#.",
        ".#......#.",
        ".#......#.",
        ".#......#.",
        ".#......#.",
        ".########.",
        "..........",
    ),
    "plus": (
        "..........",
        "....##....",
        "....##....",
        "....##....",
        ".########.",
        ".########.",
        "....##....",
        "....##....",
        "....##....",
        "..........",
    ),
    "x": (
        "..........",
        ".#......#.",
        "..#....#..",
        "...#..#...",
        "....##....",
        "....##....",
        "...#..#...",
        "..#....#..",
        ".#......#.",
        "..........",
    ),
    "n": (
        "..........",
        "...####...",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..........",
    ),
    "e": (
        "..........",
        "...####...",
        "..#....#..",
        "..#....#..",
        "..######..",
        "..#.......",
        "..#.......",
        "..#.......",
        "...#####..",
        "..........",
    ),
    "u": (
        "..........",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "...####...",
        "..........",
    ),
    "r": (
        "..........",
        "..#.###...",
        "..##...#..",
        "..#.......",
        "..#.......",
        "..#.......",
        "..#.......",
        "..#.......",
        "..#.......",
        "..........",
    ),
    "o": (
        "..........",
        "...####...",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "..#....#..",
        "...####...",
        "..........",
    ),
}


def figure_names() -> list[str]:
    """Names of the test figures in label order (label 1 is the first)."""
    return list(_FIGURES)


def figure_patterns(grid: int = BASE_GRID) -> dict[str, np.ndarray]:
    """The test figures (shapes and the letters of "neuron") as [grid, grid] float32 0/1 patterns.

    Larger grids are nearest-neighbour enlargements of the 10x10 drawings; smaller ones would lose strokes.
    """
    if grid < BASE_GRID:
        raise DataError(f"simulator: grid must be at least {BASE_GRID} to draw the figures, got {grid}")
    index = (np.arange(grid) * BASE_GRID) // grid
    return {name: _parse(rows)[np.ix_(index, index)] for name, rows in _FIGURES.items()}


def _parse(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[char == "#" for char in row] for row in rows], dtype=np.float32)


def random_patterns(
    n: int, grid: int, rng: np.random.Generator, *, p: float = 0.5, exclude: np.ndarray | None = None
) -> np.ndarray:
    """`n` random binary patterns [n, grid, grid] float32, each patch on with probability `p`.

    Patterns equal to any of `exclude` ([k, grid, grid]) are redrawn, so that test figures never leak into
    training even by chance.
    """
    if n < 1 or grid < 1:
        raise DataError(f"simulator: random patterns need n >= 1 and grid >= 1, got n={n}, grid={grid}")
    if not 0.0 < p < 1.0:
        raise DataError(f"simulator: the patch probability p must lie strictly between 0 and 1, got {p}")
    patterns = rng.random((n, grid, grid)) < p
    banned = set() if exclude is None else {np.asarray(e, dtype=bool).tobytes() for e in exclude}
    for i in range(n):
        while patterns[i].tobytes() in banned:
            patterns[i] = rng.random((grid, grid)) < p
    return patterns.astype(np.float32)


def render_patterns(patterns: np.ndarray, image_size: int) -> np.ndarray:
    """Images [n, image_size, image_size] float32 in [0, 1]: each pixel is the patch contrast it covers.

    Area averaging keeps the rendering linear in the pattern and exact (pure 0/1) when image_size is a
    multiple of the grid.
    """
    patterns = np.asarray(patterns, dtype=np.float64)
    grid = patterns.shape[-1]
    if image_size < grid:
        raise DataError(f"simulator: image_size ({image_size}) must be at least the grid ({grid})")
    cover = area_overlap(image_size, grid)
    images = np.einsum("pi,nij,qj->npq", cover, patterns, cover)
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def area_overlap(size: int, grid: int) -> np.ndarray:
    """[size, grid]: fraction of each pixel (row) covered by each patch (column); rows sum to 1."""
    pixel = np.arange(size + 1) / size
    patch = np.arange(grid + 1) / grid
    low = np.maximum(pixel[:-1, None], patch[None, :-1])
    high = np.minimum(pixel[1:, None], patch[None, 1:])
    return np.clip(high - low, 0.0, None) * size
