"""Finding corpus images that duplicate test stimuli, and the record of a screening for the report.

A prior pre-trained on an image the evaluation later asks it to reconstruct has seen the answer: its
reconstructions would look better than the method deserves. Near duplicates (a copy, a re-encoded copy, a
copy shifted by a pixel) are found by pixel correlation over small shifts and removed before training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmri_data.errors import DataError

LEAK_THRESHOLD = 0.95
"""Pixel correlation from which a corpus image counts as a duplicate of a test stimulus."""

MAX_LEAK_FRACTION = 0.01
"""Above this fraction of duplicates a corpus is refused unless the user allows it: such a corpus was most
likely built from the test set's source, and dropping the copies would not undo that."""


@dataclass(frozen=True)
class CorpusScreening:
    """What screening a corpus against the test stimuli found; `corpus` names it in the report."""

    n_images: int
    n_dropped: int
    n_test_stimuli: int
    threshold: float
    max_shift: int
    allowed_leaks: bool
    corpus: str = ""

    def leak_fraction(self) -> float:
        """The fraction of the corpus (before screening) that duplicated test stimuli."""
        return self.n_dropped / self.n_images if self.n_images else 0.0

    def describe(self) -> str:
        """One sentence for report.md; shouts when the user let a leaking corpus through."""
        shifts = f"shifts up to {self.max_shift} px" if self.max_shift else "no shifts"
        text = (
            f"prior corpus {self.corpus}: {self.n_images:,} images, {self.n_dropped:,} dropped as "
            f"near-duplicates of the {self.n_test_stimuli:,} test stimuli (pixel correlation >= "
            f"{self.threshold:g} at the evaluation size, {shifts})"
        )
        if self.allowed_leaks and self.leak_fraction() > MAX_LEAK_FRACTION:
            text += f" CORPUS LEAKS ALLOWED: {self.leak_fraction():.1%} OF IT DUPLICATED TEST STIMULI"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields for metrics.json, with the leak fraction."""
        return {**dataclasses.asdict(self), "leak_fraction": self.leak_fraction()}


def screen_corpus(
    corpus: np.ndarray,
    test_images: np.ndarray,
    *,
    threshold: float = LEAK_THRESHOLD,
    max_shift: int = 1,
    block: int = 4096,
) -> np.ndarray:
    """bool mask [n_corpus]: True where a corpus image duplicates some test image.

    A duplicate has a Pearson correlation >= `threshold` with a test image shifted by integers (dx, dy),
    |dx|, |dy| <= `max_shift`, with zero fill (not wrap-around); exact copies have correlation 1. A constant
    image has no correlation, so it duplicates only an identical (constant) test image. Corpus images are
    compared `block` at a time, so a 60,000-image corpus against 1,000 test images fits in memory.
    """
    corpus, test_images = np.asarray(corpus), np.asarray(test_images)
    _check(corpus, test_images, threshold, max_shift, block)
    flat_test = test_images.reshape(len(test_images), -1).astype(np.float64)
    shifted = [_unit_rows(_shift(test_images, dy, dx)) for dy, dx in _shifts(max_shift)]
    constant_test = flat_test[np.ptp(flat_test, axis=1) == 0, 0]
    duplicate = np.zeros(len(corpus), dtype=bool)
    for start in range(0, len(corpus), block):
        rows = corpus[start : start + block].reshape(-1, flat_test.shape[1]).astype(np.float64)
        units = _unit_rows(rows)
        best = np.full(len(rows), -np.inf)
        for test_units in shifted:
            best = np.maximum(best, (units @ test_units.T).max(axis=1, initial=-np.inf))
        constant = np.ptp(rows, axis=1) == 0
        duplicate[start : start + block] = (best >= threshold) | (
            constant & np.isin(rows[:, 0], constant_test)
        )
    return duplicate


def _check(corpus: np.ndarray, test_images: np.ndarray, threshold: float, max_shift: int, block: int) -> None:
    if corpus.ndim != 3 or test_images.ndim != 3:
        raise DataError(
            f"corpus screening: images must be [n, H, W], got corpus {corpus.shape} and test "
            f"{test_images.shape}; reshape flat rows to images first"
        )
    if corpus.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"corpus screening: corpus images are {corpus.shape[1]}x{corpus.shape[2]} but test stimuli are "
            f"{test_images.shape[1]}x{test_images.shape[2]}; load the corpus at the evaluation size"
        )
    if not 0 < threshold <= 1:
        raise DataError(f"corpus screening: threshold must lie in (0, 1], got {threshold!r}")
    if not (isinstance(max_shift, int | np.integer) and max_shift >= 0):
        raise DataError(f"corpus screening: max_shift must be an integer >= 0, got {max_shift!r}")
    if not (isinstance(block, int | np.integer) and block >= 1):
        raise DataError(f"corpus screening: block must be an integer >= 1, got {block!r}")


def _shifts(max_shift: int) -> list[tuple[int, int]]:
    steps = range(-max_shift, max_shift + 1)
    return [(dy, dx) for dy in steps for dx in steps]


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """[n, H*W]: images moved down by dy and right by dx pixels, zeros where nothing moved in."""
    n, h, w = images.shape
    out = np.zeros((n, h, w))
    if abs(dy) < h and abs(dx) < w:
        out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
            :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out.reshape(n, -1)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit length, so a dot product is their Pearson correlation; constant
    rows become zeros (correlation 0 with everything)."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    varies = np.ptp(rows, axis=1, keepdims=True) > 0  # a constant row's mean may round off its value
    return np.divide(centred, norms, out=np.zeros_like(centred), where=varies)
