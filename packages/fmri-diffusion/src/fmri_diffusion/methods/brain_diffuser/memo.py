"""Stage 1 fitted once per training set, however many Brain-Diffuser rows use it.

The brain_diffuser app runs `brain-diffuser-stage1` and `brain-diffuser` on every fold, one after the
other on the same training set, and both fit the same stage 1 (at NSD scale a ridge from 15,724 voxels to
VDVAE's 91,168 latents). The second finds the first's here. An entry is tied to its training set object,
held weakly: it is forgotten when that set is freed, and a set that merely looks the same never matches.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any

from fmri_data.dataset import PairedDataset


class Stage1Memo:
    """The last stage 1 fitted in this process: (training set, settings key) -> the fitted parts."""

    def __init__(self) -> None:
        self._entry: tuple[weakref.ref[PairedDataset], Hashable, Any] | None = None

    def fitted(self, train: PairedDataset, key: Hashable, fit: Callable[[], Any]) -> Any:
        """The parts fitted on `train` with settings `key`: the memo's, else `fit()`'s (then kept)."""
        if self._entry is not None:
            reference, held_key, parts = self._entry
            if reference() is train and held_key == key:
                return parts
        self._entry = None  # the old parts are freed before the new ones are fitted
        parts = fit()
        self._entry = (weakref.ref(train, self._forget), key, parts)
        return parts

    def _forget(self, reference: weakref.ref[PairedDataset]) -> None:
        if self._entry is not None and self._entry[0] is reference:
            self._entry = None


STAGE1_MEMO = Stage1Memo()
