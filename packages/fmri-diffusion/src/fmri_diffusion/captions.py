"""Captions -> the tokens a Stable Diffusion UNet's cross-attention reads (its CLIP text encoder's output).

Brain-Diffuser's stage 2 is guided by text as well as image embeddings where captions exist (NSD's COCO
captions): ridge predicts these caption tokens from fMRI, as it predicts the image tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import CLIPTextModel, CLIPTokenizer


class CaptionEncoder:
    """A frozen tokenizer + CLIP text encoder pair: captions [n] -> tokens [n, max_length, hidden]."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, device: str = "cpu") -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False).to(device)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu") -> CaptionEncoder:
        """The `tokenizer/` and `text_encoder/` of a diffusers Stable Diffusion folder."""
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer")
        return cls(tokenizer, CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder"), device)

    @staticmethod
    def available(folder: str | Path) -> bool:
        folder = Path(folder)
        return (folder / "text_encoder" / "config.json").is_file() and (folder / "tokenizer").is_dir()

    @torch.no_grad()
    def __call__(self, captions: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        chunks = []
        for start in range(0, len(captions), batch_size):
            ids = self.tokenizer(
                list(captions[start : start + batch_size]),
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            hidden = self.text_encoder(ids.to(self.text_encoder.device)).last_hidden_state
            chunks.append(hidden.float().cpu())
        return torch.cat(chunks)
