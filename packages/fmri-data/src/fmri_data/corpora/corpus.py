"""A prior's pre-training corpus: where it came from, its images, and what screening removed from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmri_data.corpora.builtin import (
    MIYAWAKI_GRID,
    binary_patterns,
    detect_patch_grid,
    digits,
    figure_patterns,
    simulator_corpus,
)
from fmri_data.corpora.files import read_corpus_path
from fmri_data.corpora.screening import LEAK_THRESHOLD, MAX_LEAK_FRACTION, CorpusScreening, screen_corpus
from fmri_data.digest import array_digest
from fmri_data.errors import DataError

BUILT_IN_CORPORA = ("simulator", "binary-patterns", "figures", "digits")
"""Corpus names load_corpus knows without a file; binary-patterns and figures also take a grid (NAME:K)."""

_PATTERNS, _FIGURES = "binary-patterns", "figures"


@dataclass(frozen=True, eq=False)
class PriorCorpus:
    """Images [n, H, W] float32 in [0, 1] at the stimulus size; `screening` is None until screened()."""

    name: str
    images: np.ndarray
    screening: CorpusScreening | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.images)
        if len(shape) != 3 or shape[0] == 0 or shape[1] != shape[2] or self.images.dtype != np.float32:
            raise DataError(
                f"prior corpus {self.name}: images must be a non-empty float32 [n, H, H] array, got "
                f"{getattr(self.images, 'dtype', type(self.images).__name__)} {shape}"
            )

    @property
    def digest(self) -> str:
        """A cache key for what was trained on: the images' dtype, shape and bytes, whatever the name."""
        return array_digest(self.images)[:16]

    def screened(
        self,
        test_images: np.ndarray,
        *,
        allow_leaks: bool = False,
        threshold: float = LEAK_THRESHOLD,
        max_shift: int = 1,
    ) -> PriorCorpus:
        """This corpus without its near duplicates of `test_images`, with the screening recorded.

        More than MAX_LEAK_FRACTION of duplicates is refused unless `allow_leaks`: a corpus like that was
        probably drawn from the test set's source, so near copies that escape the threshold are likely too.
        """
        test_images = np.asarray(test_images)
        duplicate = screen_corpus(self.images, test_images, threshold=threshold, max_shift=max_shift)
        screening = CorpusScreening(
            n_images=len(self.images),
            n_dropped=int(duplicate.sum()),
            n_test_stimuli=len(test_images),
            threshold=float(threshold),
            max_shift=int(max_shift),
            allowed_leaks=bool(allow_leaks),
            corpus=self.name,
        )
        fraction = screening.leak_fraction()
        if fraction > MAX_LEAK_FRACTION and not allow_leaks:
            raise DataError(
                f"prior corpus {self.name}: {screening.n_dropped:,} of its {screening.n_images:,} images "
                f"({fraction:.1%}) are near-duplicates of the test stimuli, more than the "
                f"{MAX_LEAK_FRACTION:.0%} allowed; use another corpus, or pass --allow-corpus-leaks to use "
                "it anyway (the report then says so)"
            )
        if duplicate.all():
            raise DataError(
                f"prior corpus {self.name}: every image duplicates a test stimulus, nothing is left to "
                "pre-train on; use another corpus"
            )
        return PriorCorpus(self.name, self.images[~duplicate], screening)


def load_corpus(
    spec: str, image_size: int, *, n: int = 3000, seed: int = 0, stimuli: np.ndarray | None = None
) -> PriorCorpus:
    """The corpus `spec` names at `image_size`, not yet screened.

    `spec` is a built-in name (BUILT_IN_CORPORA; binary-patterns:K or figures:K sets the grid, else it is
    detected from `stimuli` or 10) or a path to a folder of images, an .npz or an HDF5 file. Built-ins win
    over a file of the same name. `n` and `seed` apply to the drawn built-ins; digits always has 1,797 images.
    """
    if not (isinstance(image_size, int | np.integer) and image_size >= 1):
        raise DataError(f"prior corpus: image_size must be an integer >= 1, got {image_size!r}")
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise DataError(f"prior corpus {spec}: n must be an integer >= 1, got {n!r}")
    if spec == "simulator":
        images = simulator_corpus(n, image_size, seed)
    elif spec == "digits":
        images = digits(image_size)
    elif spec == _PATTERNS or spec.startswith(f"{_PATTERNS}:"):
        images = binary_patterns(n, image_size, _grid(spec, stimuli), seed)
    elif spec == _FIGURES or spec.startswith(f"{_FIGURES}:"):
        images = figure_patterns(n, image_size, _grid(spec, stimuli), seed)
    elif Path(spec).expanduser().exists():
        images = read_corpus_path(Path(spec).expanduser(), image_size)
    else:
        raise DataError(
            f"prior corpus {spec!r}: not a built-in corpus ({', '.join(BUILT_IN_CORPORA)}, or "
            f"{_PATTERNS}:K, {_FIGURES}:K) and no such file or folder; check the name or path"
        )
    return PriorCorpus(name=spec, images=images)


def _grid(spec: str, stimuli: np.ndarray | None) -> int:
    """K from NAME:K, else the grid the stimuli were rendered from, else Miyawaki's 10."""
    name, _, given = spec.partition(":")
    if given:
        if not (given.isascii() and given.isdigit()):  # int() would fail on '²' or read '٤' as 4
            raise DataError(
                f"prior corpus {spec!r}: the grid after the colon must be an integer, e.g. {name}:10"
            )
        return int(given)
    detected = detect_patch_grid(stimuli) if stimuli is not None else None
    return detected or MIYAWAKI_GRID
