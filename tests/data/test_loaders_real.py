"""The shared real files, reached through FMRI_DATA_DIR (skipped where it is unset)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fmri_data.catalog import CATALOG, resolve_dataset_path, sha256_of
from fmri_data.errors import DataError
from fmri_data.io import load_dataset
from fmri_data.splits import given_split


def require(name: str) -> Path:
    folder = os.environ.get("FMRI_DATA_DIR")
    if not folder:
        pytest.skip("FMRI_DATA_DIR is not set; point it at the folder with the real .mat files to run this")
    path = Path(folder) / CATALOG[name].filename
    if not path.is_file():
        pytest.skip(f"{path} is missing; put {CATALOG[name].filename} in FMRI_DATA_DIR to run this")
    return path


def test_checksums_match_the_catalog() -> None:
    for name, entry in CATALOG.items():
        assert sha256_of(require(name)) == entry.sha256
        assert resolve_dataset_path(name) == require(name)


def test_digit69_shape_split_and_upright_digits() -> None:
    require("digit69")
    data = load_dataset("digit69")
    assert (data.n_trials, data.n_voxels, data.image_shape) == (100, 3092, (28, 28))
    assert data.given_test.sum() == 10
    given_split(data)  # 100 distinct images: the given split does not leak
    six = data.images[data.labels == 1].mean(axis=0)
    nine = data.images[data.labels == 2].mean(axis=0)
    # A six's loop is at the bottom; a nine's at the top. The nine's mean image is nearly balanced between
    # halves (its tail is long), so it is compared with the six: a transposed or flipped read fails both.
    assert six[14:].mean() > 1.2 * six[:14].mean()
    assert nine[:14].mean() > six[:14].mean()
    assert six[14:].mean() > nine[14:].mean()


def test_miyawaki_runs_stimuli_and_leaking_split() -> None:
    require("miyawaki")
    data = load_dataset("miyawaki")
    assert (data.n_trials, data.n_voxels, data.image_shape) == (119, 967, (28, 28))
    assert data.n_stimuli == 20
    assert data.labels is None
    assert set(np.unique(data.run)) <= set(range(21, 33))
    with pytest.raises(DataError, match=r"10 test stimuli \(12 of 12 test trials\) also occur in training"):
        given_split(data)
