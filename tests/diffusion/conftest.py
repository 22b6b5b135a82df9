"""Tiny diffusers components for fast CPU tests, built in code as diffusers' own tests do; quick settings."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from fmri_data.methods import MethodSettings
from fmri_diffusion.models.builders import small_unet
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.priors.loading import BaseModel
from fmri_diffusion.schedulers import sampling_scheduler, training_scheduler
from fmri_encoders.training import train as train_model

TOKEN_DIM = 16


def tiny_components(seed: int = 0, in_channels: int = 2) -> dict:
    torch.manual_seed(seed)
    unet = small_unet(
        sample_size=8,
        in_channels=in_channels,
        out_channels=1,
        cross_attention_dim=8,
        block_out_channels=(8, 16),
        attention_head_dim=4,
        norm_num_groups=4,
    )
    conditioner = FmriConditioner(in_features=5, token_dim=8, n_tokens=2, hidden=16, dropout=0.0)
    return {"unet": unet, "scheduler": training_scheduler("cosine"), "conditioner": conditioner}


@pytest.fixture
def tiny_pipeline() -> FmriImagePipeline:
    components = tiny_components()
    components["scheduler"] = sampling_scheduler("ddim", components["scheduler"])
    pipe = FmriImagePipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_tiny_sd(seed: int = 0) -> BaseModel:
    """Stable Diffusion's classes and layout (3-channel VAE, 4 latents, cross-attention) at toy size."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TOKEN_DIM,
        attention_head_dim=4,
        layers_per_block=1,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    return BaseModel(unet=unet, vae=vae, scheduler=DDPMScheduler(), source="tiny")


@pytest.fixture
def quick_settings(tmp_path):
    """Settings with smoke-test budgets on the CPU, seed 2, work and cache folders under tmp_path: a function
    of the sampling overrides and the choices."""

    def settings(sampling: dict[str, Any], choices: dict | None = None) -> MethodSettings:
        return MethodSettings(
            device="cpu",
            quick=True,
            seed=2,
            progress=False,
            work_dir=tmp_path / "w",
            cache_dir=tmp_path / "cache",
            sampling=sampling,
            choices=choices or {},
        )

    return settings


@pytest.fixture(name="tiny_sd")
def tiny_sd_fixture():
    """The factory of tiny SD-shaped base models (cross_attention_dim TOKEN_DIM, 16 px, 8x8 latents)."""
    return make_tiny_sd


def write_tiny_variation_model(folder, clip_folder, *, text: bool = True) -> None:
    """A tiny SD folder plus image_encoder/ (a copy of `clip_folder`) and, with `text`, tokenizer/ +
    text_encoder/: the layout of diffusers' image-variation models (and of SD's text side), widths TOKEN_DIM.
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    make_tiny_sd().save(folder)
    shutil.copytree(clip_folder, folder / "image_encoder")  # its projection_dim 16 is TOKEN_DIM
    if not text:
        return
    letters = [*"abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in letters + [f"{c}</w>" for c in letters]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)
    tokenizer.save_pretrained(folder / "tokenizer")
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TOKEN_DIM,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=8,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(text_config).save_pretrained(folder / "text_encoder")


@pytest.fixture
def variation_model(tmp_path, clip_folder):
    """A tiny image-variation model folder with a text side (see write_tiny_variation_model)."""
    write_tiny_variation_model(tmp_path / "variation", clip_folder)
    return tmp_path / "variation"


@pytest.fixture
def variation_model_without_text(tmp_path, clip_folder):
    """The tiny image-variation model folder without tokenizer/ and text_encoder/."""
    write_tiny_variation_model(tmp_path / "variation-no-text", clip_folder, text=False)
    return tmp_path / "variation-no-text"


@dataclass
class RecordedFit:
    """The weights one training run started and ended with, and the steps it was given."""

    start: dict[str, torch.Tensor]
    max_steps: int
    end: dict[str, torch.Tensor] = field(default_factory=dict)


@pytest.fixture
def recorded_fits(monkeypatch) -> dict[str, list[RecordedFit]]:
    """Every run of cvae's, ddpm's and ldm's training stages (the CVAE's, the UNet's and the autoencoder's),
    by description."""
    fits: dict[str, list[RecordedFit]] = {}

    def recording(model: torch.nn.Module, loss_fn: Any, sampler: Any, config: Any, **kwargs: Any) -> Any:
        fit = RecordedFit(_weights(model), config.max_steps)
        result = train_model(model, loss_fn, sampler, config, **kwargs)
        fit.end = _weights(model)
        fits.setdefault(kwargs["description"], []).append(fit)
        return result

    for trains in ("methods.conditional", "methods.cvae", "training.autoencoder"):
        monkeypatch.setattr(f"fmri_diffusion.{trains}.train_model", recording)
    return fits


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}
