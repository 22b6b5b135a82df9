"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from fmri_data.corpora.builtin import render_bilinear
from fmri_data.dataset import PairedDataset
from fmri_data.loaders.nsd import nsd_paths

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

CHECKOUT = Path(__file__).resolve().parents[1]
_NOT_WATCHED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _checkout_files() -> set[Path]:
    files = set()
    for folder, subfolders, names in os.walk(CHECKOUT):
        subfolders[:] = [name for name in subfolders if name not in _NOT_WATCHED]
        files.update(Path(folder, name).relative_to(CHECKOUT) for name in names)
    return files


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean():
    """Tests write under pytest's temporary folders only: a file the suite adds to the checkout fails it."""
    before = _checkout_files()
    yield
    added = sorted(str(path) for path in _checkout_files() - before)
    assert not added, f"the test suite wrote into the checkout: {added[:5]} ({len(added)} files)"


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


@pytest.fixture
def linear_split(linear_dataset: PairedDataset) -> tuple[PairedDataset, PairedDataset]:
    """linear_dataset's given split: (train, test)."""
    given = linear_dataset.given_test
    return linear_dataset.subset(np.flatnonzero(~given)), linear_dataset.subset(np.flatnonzero(given))


@pytest.fixture(scope="session")
def make_linear():
    """The factory behind linear_dataset, for tests that need other sizes."""
    return make_linear_dataset


def make_patch_data(
    n_stimuli: int = 24, repeats: int = 2, seed: int = 0
) -> tuple[PairedDataset, PairedDataset]:
    """5 x 5 binary patches at 20 px through a random linear map plus noise: (train, test), the last 4
    stimuli tested."""
    grid, size = 5, 20
    rng = np.random.default_rng(seed)
    patterns = (rng.random((n_stimuli, grid, grid)) < 0.4).astype(np.float64)
    stimulus_id = np.repeat(np.arange(n_stimuli), repeats)
    fmri = patterns[stimulus_id].reshape(len(stimulus_id), -1) @ rng.normal(size=(grid * grid, 40))
    data = PairedDataset(
        fmri=(fmri + 0.3 * rng.normal(size=fmri.shape)).astype(np.float32),
        images=render_bilinear(patterns, size)[stimulus_id].astype(np.float32),
        stimulus_id=stimulus_id,
    )
    tested = stimulus_id >= n_stimuli - 4
    return data.subset(np.flatnonzero(~tested)), data.subset(np.flatnonzero(tested))


@pytest.fixture(name="patch_data")
def patch_data_fixture():
    """The factory of tiny patch-design data sets (train, test)."""
    return make_patch_data


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny torch models gain nothing from threads; spin-waiting threads crawl on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NSD_GRID = (4, 5, 3)


def _write_nsd(root, *, trials=6, sessions=2, fmt="nii.gz", seed=0, captions=False):
    """Two sessions of `trials` trials; subject 1 sees images 0..9 of the design, 2 of them shared.

    captions: also write nsd_stim_info_merged.csv and COCO caption files (image i: "a photo of image i").
    """
    rng = np.random.default_rng(seed)
    paths = nsd_paths(root, 1)
    for key in ("expdesign", "mask", "stimuli"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
    paths["betas"].mkdir(parents=True, exist_ok=True)
    order = rng.integers(1, 11, size=trials * sessions)  # 1-based positions in subjectim
    order[[0, 1, trials]] = (1, 5, 5)  # both shared images occur, one of them in both sessions
    subjectim = np.tile(np.arange(1, 11) + 20, (8, 1))  # subject 1's images are NSD ids 20..29 (1-based)
    scipy.io.savemat(
        paths["expdesign"],
        {"masterordering": order[None], "subjectim": subjectim, "sharedix": np.array([[21, 25]])},
    )
    mask = np.zeros(NSD_GRID, np.int16)
    mask[1:3, 2:4, :2] = 1
    nib.save(nib.Nifti1Image(mask - (mask == 0), np.eye(4)), paths["mask"])
    volumes = []
    for session in range(1, sessions + 1):
        betas = rng.normal(scale=300, size=(*NSD_GRID, trials)).astype(np.int16) + 300 * session
        volumes.append(betas)
        if fmt == "nii.gz":
            nib.save(nib.Nifti1Image(betas, np.eye(4)), paths["betas"] / f"betas_session{session:02d}.nii.gz")
        else:
            with h5py.File(paths["betas"] / f"betas_session{session:02d}.hdf5", "w") as handle:
                handle["betas"] = np.transpose(betas, (3, 2, 1, 0))
    with h5py.File(paths["stimuli"], "w") as handle:
        handle["imgBrick"] = rng.integers(0, 256, size=(30, 16, 16, 3), dtype=np.uint8)
    if captions:
        _write_nsd_captions(paths)
    return order, volumes, mask > 0


def _write_nsd_captions(paths):
    """The stimulus table (cocoId = 1000 + nsdId, alternating splits) and two captions per image."""
    rows = ["nsdId,cocoId,cocoSplit,shared1000"]
    rows += [f"{i},{1000 + i},{'train2017' if i % 2 else 'val2017'},False" for i in range(30)]
    paths["stim_info"].write_text("\n".join(rows) + "\n")
    paths["annotations"].mkdir(parents=True, exist_ok=True)
    for split, parity in (("train", 1), ("val", 0)):
        annotations = [
            {"id": 10 * i + k, "image_id": 1000 + i, "caption": text}
            for i in range(parity, 30, 2)
            for k, text in ((1, f" a photo of image {i} "), (2, "another caption"))
        ]
        (paths["annotations"] / f"captions_{split}2017.json").write_text(
            json.dumps({"annotations": annotations[::-1]})
        )


@pytest.fixture
def write_nsd_layout():
    """Writes a tiny NSD in the published layout (sessions of 6 trials; set nsd.TRIALS_PER_SESSION to 6)."""
    return _write_nsd


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory):
    """A tiny random CLIP vision model saved the way real checkpoints are, to load back from disk."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def published_models(tmp_path_factory) -> Path:
    """A tiny Versatile Diffusion folder with the tiny VDVAE converted into its vdvae/ (as a researcher
    keeps the published weights: one --pretrained folder), and the VDVAE's published-style checkpoint
    file (a plain state dict saved by torch.save) beside it as vdvae.th."""
    import torch

    from fmri_diffusion.testing import write_vdvae, write_versatile

    root = tmp_path_factory.mktemp("published")
    vdvae = write_vdvae(write_versatile(root / "versatile-diffusion") / "vdvae")
    torch.save({f"module.{key}": value for key, value in vdvae.state_dict().items()}, root / "vdvae.th")
    return root
