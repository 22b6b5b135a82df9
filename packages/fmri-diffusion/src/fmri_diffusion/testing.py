"""Brain-Diffuser's published models with random weights, in their published folder layouts, built in code.

Tests use the tiny shapes (same classes, same key names, seconds on a CPU); the memory benchmark uses the
published shapes (memory and time do not depend on the weights' values). Nothing is downloaded.

    write_versatile(folder)                  # shi-labs/versatile-diffusion's layout, toy size
    write_versatile(folder, published=True)  # its real shapes: SD-1.x image UNet, CLIP ViT-L/14, ...
    write_vdvae(folder / "vdvae")            # a converted VDVAE folder (tiny, or published=True)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fmri_diffusion.models.vdvae import VDVAE

TINY_VDVAE = {
    "image_size": 16,
    "width": 16,
    "zdim": 4,
    "enc_blocks": "16x1,16d2,8x1,8d2,4x1,4d4,1x1",
    "dec_blocks": "1x1,4m1,4x1,8m4,8x1,16m8,16x1",
    "num_mixtures": 2,
}
"""VDVAE at toy size: 7 latent layers at 1, 4, 8 and 16 px."""


def write_vdvae(folder: Path, *, published: bool = False, seed: int = 0) -> VDVAE:
    torch.manual_seed(seed)
    model = VDVAE() if published else VDVAE(**TINY_VDVAE)
    model.save_pretrained(folder)
    return model


def write_versatile(folder: Path, *, published: bool = False, seed: int = 0) -> Path:
    """Every part Versatile Diffusion's dual guidance reads, with model_index.json as published.

    Either shape keeps 77 caption tokens and 257 image tokens (tiny: a 32 px CLIP with 2 px patches)."""
    from diffusers import DDIMScheduler
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    token_dim = 768 if published else 16
    vision = {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
    }
    text = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
    toy = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    parts = {
        "image_unet": stable_diffusion_unet(published=published),
        "text_unet": stable_diffusion_unet(published=published, flat=True),
        "vae": stable_diffusion_vae(published=published),
        "scheduler": DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
        ),
        "image_encoder": CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                **(vision if published else toy),
                image_size=224 if published else 32,
                patch_size=14 if published else 2,  # 16 x 16 patches + the class token: 257 tokens
                projection_dim=token_dim,
            )
        ),
        "image_feature_extractor": CLIPImageProcessor(
            size={"shortest_edge": 224 if published else 32},
            crop_size={"height": 224 if published else 32, "width": 224 if published else 32},
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    parts["tokenizer"] = _letter_tokenizer(folder, CLIPTokenizer)
    parts["text_encoder"] = CLIPTextModelWithProjection(
        CLIPTextConfig(
            **(text if published else toy),
            vocab_size=49408 if published else parts["tokenizer"].vocab_size,
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
    return folder


def stable_diffusion_unet(*, published: bool, flat: bool = False) -> torch.nn.Module:
    """Stable Diffusion 1.x's UNet (cross-attention width 768), or a toy one (width 16); `flat`: Versatile
    Diffusion's text UNet of the same layout (its transformers sit where the image UNet's do)."""
    from diffusers import UNet2DConditionModel
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    width = (320, 640, 1280, 1280) if published else (8, 16)
    crossed, kind = len(width) - 1, "Flat" if flat else "2D"
    model_class = UNetFlatConditionModel if flat else UNet2DConditionModel
    return model_class(
        sample_size=64 if published else 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=width,
        down_block_types=(f"CrossAttnDownBlock{kind}",) * crossed + (f"DownBlock{kind}",),
        up_block_types=(f"UpBlock{kind}",) + (f"CrossAttnUpBlock{kind}",) * crossed,
        cross_attention_dim=768 if published else 16,
        attention_head_dim=8 if published else 4,
        layers_per_block=2 if published else 1,
        norm_num_groups=32 if published else 4,
    )


def stable_diffusion_vae(*, published: bool) -> torch.nn.Module:
    """Stable Diffusion's AutoencoderKL (512 px, 4 latent channels at 1/8), or a toy one (16 px, 1/2)."""
    from diffusers import AutoencoderKL

    width = (128, 256, 512, 512) if published else (8, 8)
    return AutoencoderKL(
        sample_size=512 if published else 16,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(width),
        up_block_types=("UpDecoderBlock2D",) * len(width),
        block_out_channels=width,
        latent_channels=4,
        norm_num_groups=32 if published else 4,
        layers_per_block=2 if published else 1,
    )


def _letter_tokenizer(folder: Path, tokenizer_class: type) -> object:
    """A CLIP tokenizer over letters and digits (the real vocabulary is a download), 77 tokens long."""
    letters = [*"abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in letters + [f"{c}</w>" for c in letters]:
        vocab[token] = len(vocab)
    files = folder / "vocab.json", folder / "merges.txt"
    files[0].write_text(json.dumps(vocab))
    files[1].write_text("#version: 0.2\n")
    tokenizer = tokenizer_class(str(files[0]), str(files[1]), model_max_length=77)
    for file in files:
        file.unlink()
    return tokenizer
