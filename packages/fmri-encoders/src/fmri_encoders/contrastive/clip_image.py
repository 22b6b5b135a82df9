"""A frozen pretrained CLIP vision model as the image side, loaded only from local files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.functional import interpolate

if TYPE_CHECKING:  # transformers takes seconds to import: only a run that loads CLIP pays for it
    from transformers import CLIPVisionModelWithProjection

# CLIP's published normalisation, used when a model folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


class ClipImageEncoder(nn.Module):
    """Grayscale [B, H, W] images in [0, 1] -> CLIP image embeddings [B, projection_dim]; never trained.

    Images are copied to 3 channels, resized to the model's input size and normalised as CLIP was trained.
    """

    def __init__(
        self,
        model: CLIPVisionModelWithProjection,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.image_size = int(model.config.image_size)
        self.embed_dim = int(model.config.projection_dim)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> ClipImageEncoder:
        """Stay in eval mode whatever the caller asks: the model is frozen."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images[:, None].float().expand(-1, 3, -1, -1)
        size = (self.image_size, self.image_size)
        if rgb.shape[-2:] != size:
            rgb = interpolate(rgb, size=size, mode="bicubic", align_corners=False, antialias=True)
        pixels = (rgb.clamp(0, 1) - self.mean) / self.std
        return self.model(pixel_values=pixels).image_embeds.float()


def load_clip_image_encoder(path_or_id: str | Path) -> ClipImageEncoder:
    """Load a CLIP vision model from a folder or the Hugging Face cache, without any download.

    Raises FileNotFoundError with a one-line reason when the folder or cached snapshot is missing or
    incomplete. Only safetensors weights are accepted (no pickle is ever loaded).
    """
    folder = _local_folder(path_or_id)
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / name).is_file() for name in _WEIGHTS):
        missing.append(" or ".join(_WEIGHTS))
    if missing:
        raise FileNotFoundError(f"CLIP model folder {folder} is incomplete: missing {', '.join(missing)}")
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(
        folder, local_files_only=True, use_safetensors=True, dtype=torch.float32
    )
    return ClipImageEncoder(model, *_normalisation(folder))


def _local_folder(path_or_id: str | Path) -> Path:
    """The folder itself, or the cached snapshot of a Hub id (HF_HUB_OFFLINE-safe: nothing is fetched)."""
    path = Path(path_or_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"CLIP model path {path} is a file; give the folder holding config.json")
        return path
    if isinstance(path_or_id, Path) or path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") > 1:
        raise FileNotFoundError(f"CLIP model folder {path} does not exist")
    from huggingface_hub import snapshot_download  # a dependency of transformers

    try:
        return Path(snapshot_download(path_or_id, local_files_only=True))
    except (OSError, ValueError):  # not cached, or not a valid repo id
        raise FileNotFoundError(
            f"CLIP model {path_or_id!r} is neither a folder nor in the Hugging Face cache; "
            f"download it first (hf download {path_or_id}) or pass its folder"
        ) from None


def _normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return CLIP_MEAN, CLIP_STD
    settings = json.loads(config.read_text())
    return tuple(settings.get("image_mean", CLIP_MEAN)), tuple(settings.get("image_std", CLIP_STD))
