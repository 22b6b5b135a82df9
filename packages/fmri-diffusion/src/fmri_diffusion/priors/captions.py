"""Captions -> the tokens a Stable Diffusion UNet's cross-attention reads (its CLIP text encoder's output).

Brain-Diffuser's stage 2 is guided by text as well as image embeddings where captions exist (NSD's COCO
captions): ridge predicts these caption tokens from fMRI, as it predicts the image tokens. A trial may
carry several captions separated by newlines (COCO has five per image); their tokens are averaged, as
Brain-Diffuser averages its CLIP-text features.
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
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(
            str(folder), subfolder="text_encoder", local_files_only=True
        )
        return cls(tokenizer, text_encoder, device)

    @staticmethod
    def available(folder: str | Path) -> bool:
        folder = Path(folder)
        return (folder / "text_encoder" / "config.json").is_file() and (folder / "tokenizer").is_dir()

    @property
    def width(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        """[n, max_length, width]: each entry's newline-separated captions encoded and averaged."""
        parts = [
            [line.strip() for line in caption.split("\n") if line.strip()] or [""] for caption in captions
        ]
        flat = self.encode([line for lines in parts for line in lines])
        sizes = [len(lines) for lines in parts]
        return torch.stack([chunk.mean(0) for chunk in flat.split(sizes)])

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """[n, max_length, width] tokens of single texts."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            ids = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            chunks.append(self.tokens(ids.to(self.text_encoder.device)).float().cpu())
        return torch.cat(chunks)

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[n, max_length, width] tokens of token ids: the text encoder's last hidden state."""
        return self.text_encoder(ids).last_hidden_state
