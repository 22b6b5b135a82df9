"""Versatile Diffusion (Xu et al. 2023), Brain-Diffuser's stage-2 prior, from a local folder.

The folder is the published diffusers layout (`image_unet/`, `text_unet/`, `vae/`, `scheduler/`,
`image_encoder/`, `text_encoder/`, `tokenizer/`, `image_feature_extractor/`); each part is read with its own
library's `from_pretrained`. Dual guidance (an image conditioned on an image and a caption at once) puts,
at every cross-attention site of the image UNet, the text UNet's transformer beside the image UNet's own:
one reads the CLIP-text tokens, the other the 257 CLIP-vision tokens, and their updates mix by the text
weight (Brain-Diffuser's `mixing`, 0.4). diffusers 0.42's own dual-guided pipeline cannot run (its
`DualTransformer2DModel` refuses the `encoder_attention_mask` every UNet block now passes), so the mixing
module is written here; it keeps diffusers' key names (`transformers.0` image, `transformers.1` text).

The CLIP tokens are Versatile Diffusion's own: every token projected, then divided by the norm of the
pooled (class) embedding. The null guides of classifier-free guidance are the empty caption's tokens and a
mid-gray image's, as Versatile Diffusion's pipelines use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.models.transformers.transformer_2d import Transformer2DModel, Transformer2DModelOutput
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel
from torch import nn
from transformers import (
    CLIPImageProcessor,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)

from fmri_diffusion.priors.captions import CaptionEncoder
from fmri_diffusion.priors.loading import BaseModel, BaseModelError

SUBFOLDERS = (
    "image_unet",
    "text_unet",
    "vae",
    "scheduler",
    "image_encoder",
    "text_encoder",
    "tokenizer",
    "image_feature_extractor",
)


class DualCrossAttention(nn.Module):
    """One cross-attention site of the dual-guided UNet: [caption tokens, image tokens] in, the two
    transformers' updates mixed by `text_weight` out (0: the image guide alone, and no text pass)."""

    def __init__(self, image_transformer: nn.Module, text_transformer: nn.Module, text_length: int) -> None:
        super().__init__()
        self.transformers = nn.ModuleList([image_transformer, text_transformer])
        self.text_length = text_length
        self.text_weight = 0.0

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        **_masks: Any,  # no attention masks: every token of both guides is read
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        def update(transformer: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
            out = transformer(
                hidden_states,
                encoder_hidden_states=tokens,
                timestep=timestep,
                cross_attention_kwargs=cross_attention_kwargs,
                return_dict=False,
            )[0]
            return out - hidden_states

        text, image = encoder_hidden_states.split(
            [self.text_length, encoder_hidden_states.shape[1] - self.text_length], 1
        )
        output = hidden_states + (1 - self.text_weight) * update(self.transformers[0], image)
        if self.text_weight > 0:
            output = output + self.text_weight * update(self.transformers[1], text)
        return (output,) if not return_dict else Transformer2DModelOutput(sample=output)


def dual_guided_unet(
    image_unet: UNet2DConditionModel, text_unet: UNetFlatConditionModel, text_length: int
) -> UNet2DConditionModel:
    """The image UNet with each of its transformers paired with the text UNet's at the same place."""
    sites = [name for name, module in image_unet.named_modules() if isinstance(module, Transformer2DModel)]
    if not sites:
        raise BaseModelError("Versatile Diffusion: image_unet/ has no cross-attention transformers")
    for name in sites:
        parent, index = name.rsplit(".", 1)
        text_transformer = text_unet.get_submodule(name)
        image_unet.get_submodule(parent)[int(index)] = DualCrossAttention(
            image_unet.get_submodule(name), text_transformer, text_length
        )
    return image_unet


def set_text_weight(unet: UNet2DConditionModel, weight: float) -> None:
    for module in unet.modules():
        if isinstance(module, DualCrossAttention):
            module.text_weight = weight


class VersatileCaptionEncoder(CaptionEncoder):
    """Captions -> Versatile Diffusion's text tokens [n, 77, D] (newline-separated captions averaged)."""

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Every token projected, then divided by the norm of the pooled (projected end-of-text) embedding."""
        out = self.text_encoder(ids)
        tokens = self.text_encoder.text_projection(out.last_hidden_state)
        return tokens / out.text_embeds.norm(dim=-1, keepdim=True)[:, None]


class VersatileImageEncoder:
    """Stimuli [n, H, W] (or RGB [n, H, W, 3]) in [0, 1] -> Versatile Diffusion's image tokens [n, 257, D]."""

    def __init__(self, processor: CLIPImageProcessor, encoder: CLIPVisionModelWithProjection) -> None:
        self.processor, self.encoder = processor, encoder.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 32) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), batch_size):
            chunk = np.round(images[start : start + batch_size] * 255)
            rgb = chunk if chunk.ndim == 4 else np.repeat(chunk[..., None], 3, -1)
            pixels = self.processor(images=list(rgb.astype(np.uint8)), return_tensors="pt").pixel_values
            out = self.encoder(pixels.to(self.encoder.device, self.encoder.dtype))
            tokens = self.encoder.visual_projection(
                self.encoder.vision_model.post_layernorm(out.last_hidden_state)
            )
            chunks.append((tokens / tokens[:, :1].norm(dim=-1, keepdim=True)).float().cpu())
        return torch.cat(chunks)

    def null(self) -> torch.Tensor:
        """[1, 257, D]: a mid-gray image's tokens, the unconditional image guide."""
        return self(np.full((1, 224, 224), 0.5, np.float32))


@dataclass
class VersatileDiffusion:
    """The dual-guided base (UNet with paired transformers, VAE, DDIM scheduler) and its two encoders."""

    base: BaseModel
    images: VersatileImageEncoder
    captions: VersatileCaptionEncoder

    @property
    def text_length(self) -> int:
        return int(self.captions.tokenizer.model_max_length)


def check_versatile_folder(folder: str | Path) -> Path:
    """The folder, refused in one line where a part of Versatile Diffusion is missing (a partial download):
    brain-diffuser checks it before any fold trains, load_versatile when it reads it."""
    folder = Path(folder).expanduser()
    missing = [name for name in SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        raise BaseModelError(
            f"{folder}: no {', '.join(f'{m}/' for m in missing)}; pass a local Versatile Diffusion folder "
            "(the diffusers layout of shi-labs/versatile-diffusion)"
        )
    return folder


def load_versatile(
    folder: str | Path, *, device: str = "cpu", torch_dtype: torch.dtype | None = None
) -> VersatileDiffusion:
    """Every part of a local Versatile Diffusion folder (never the hub), the UNet made dual-guided."""
    folder = check_versatile_folder(folder)
    local = {"local_files_only": True}
    weights = {**local, "torch_dtype": torch_dtype}
    try:
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", **local)
        captions = VersatileCaptionEncoder(
            tokenizer, CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder", **weights), device
        )
        images = VersatileImageEncoder(
            CLIPImageProcessor.from_pretrained(folder / "image_feature_extractor", **local),
            CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", **weights).to(device),
        )
        unet = dual_guided_unet(
            UNet2DConditionModel.from_pretrained(folder / "image_unet", **weights),
            UNetFlatConditionModel.from_pretrained(folder / "text_unet", **weights),
            int(tokenizer.model_max_length),
        )
        vae = AutoencoderKL.from_pretrained(folder / "vae", **weights)
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", **local)
    except OSError as error:
        raise BaseModelError(
            f"cannot load Versatile Diffusion from {folder} ({' '.join(str(error).split())[:200]})"
        ) from error
    base = BaseModel(unet=unet.eval(), vae=vae.eval(), scheduler=scheduler, source=str(folder), folder=folder)
    return VersatileDiffusion(base, images, captions)
