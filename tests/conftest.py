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


TINY_VDVAE = {
    "image_size": 16,
    "width": 16,
    "zdim": 4,
    "enc_blocks": "16x1,16d2,8x1,8d2,4x1,4d4,1x1",
    "dec_blocks": "1x1,4m1,4x1,8m4,8x1,16m8,16x1",
    "num_mixtures": 2,
}
"""The published VDVAE's classes and key names at toy size: 7 latent layers at 1, 4, 8 and 16 px."""


def write_tiny_versatile(folder: Path, token_dim: int = 16) -> None:
    """Versatile Diffusion's parts (the same classes and subfolders as shi-labs/versatile-diffusion, its
    model_index.json included) at toy size: 77 caption tokens and 257 image tokens, as published."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    unet_shape = {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": (8, 16),
        "cross_attention_dim": token_dim,
        "attention_head_dim": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
    }
    parts = {
        "image_unet": UNet2DConditionModel(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            **unet_shape,
        ),
        "text_unet": UNetFlatConditionModel(
            down_block_types=("CrossAttnDownBlockFlat", "DownBlockFlat"),
            up_block_types=("UpBlockFlat", "CrossAttnUpBlockFlat"),
            **unet_shape,
        ),
        "vae": AutoencoderKL(
            sample_size=16,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 8),
            latent_channels=4,
            norm_num_groups=4,
            layers_per_block=1,
        ),
        "scheduler": DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False),
        "image_encoder": CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=32,
                patch_size=2,  # 16 x 16 patches + the class token: 257 tokens, as ViT-L/14 at 224 px
                projection_dim=token_dim,
            )
        ),
        "image_feature_extractor": CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    letters = [*"abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in letters + [f"{c}</w>" for c in letters]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    parts["tokenizer"] = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )
    parts["text_encoder"] = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=token_dim,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=token_dim,
        )
    )
    index = {"_class_name": "VersatileDiffusionPipeline", "_diffusers_version": "0.12.0.dev0"}
    for name, part in parts.items():
        part.save_pretrained(folder / name)
        library = "transformers" if type(part).__module__.startswith("transformers") else "diffusers"
        index[name] = ["versatile_diffusion" if name == "text_unet" else library, type(part).__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()


@pytest.fixture(scope="session")
def published_models(tmp_path_factory) -> Path:
    """A tiny Versatile Diffusion folder with the tiny VDVAE converted into its vdvae/ (as a researcher
    keeps the published weights: one --pretrained folder), and the VDVAE's published-style checkpoint
    file (a plain state dict saved by torch.save) beside it as vdvae.th."""
    import torch

    from fmri_diffusion.models.vdvae import VDVAE

    root = tmp_path_factory.mktemp("published")
    write_tiny_versatile(root / "versatile-diffusion")
    torch.manual_seed(0)
    vdvae = VDVAE(**TINY_VDVAE)
    torch.save({f"module.{key}": value for key, value in vdvae.state_dict().items()}, root / "vdvae.th")
    vdvae.save_pretrained(root / "versatile-diffusion" / "vdvae")
    return root
