"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fmri_data.dataset import PairedDataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def shared_data_dir() -> Path:
    """The folder of real data named by FMRI_DATA_DIR; tests that need it skip where it is unset."""
    value = os.environ.get("FMRI_DATA_DIR")
    if not value:
        pytest.skip("FMRI_DATA_DIR is not set: real-data tests need the shared digit69/Miyawaki files")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"FMRI_DATA_DIR={value} is not a folder")
    return path


def make_linear_dataset(
    n_stimuli: int = 30,
    repeats: int = 2,
    n_voxels: int = 60,
    size: int = 8,
    noise: float = 0.1,
    seed: int = 0,
) -> PairedDataset:
    """Images seen through a random linear map plus noise: decodable, with repeated stimuli."""
    rng = np.random.default_rng(seed)
    stimuli = (rng.random((n_stimuli, size, size)) > 0.5).astype(np.float32)
    stimulus_id = np.repeat(np.arange(n_stimuli), repeats)
    images = stimuli[stimulus_id]
    weights = rng.normal(size=(size * size, n_voxels)) / size
    fmri = images.reshape(len(images), -1) @ weights + noise * rng.normal(size=(len(images), n_voxels))
    given_test = np.isin(stimulus_id, np.arange(n_stimuli - 5, n_stimuli))
    return PairedDataset(
        fmri=fmri,
        images=images,
        stimulus_id=stimulus_id,
        given_test=given_test,
        metadata={"name": "linear-toy"},
    )


@pytest.fixture
def linear_dataset() -> PairedDataset:
    return make_linear_dataset()


@pytest.fixture(scope="session")
def make_linear():
    """The factory behind linear_dataset, for tests that need other sizes."""
    return make_linear_dataset


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny torch models gain nothing from threads; spin-waiting threads crawl on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
