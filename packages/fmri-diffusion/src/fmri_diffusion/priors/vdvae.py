"""VDVAE weights from a local file: the published checkpoint, or the folder `convert_vdvae` makes of it.

The published EMA checkpoint (`imagenet64-iter-1600000-model-ema.th`) is a plain state dict of tensors,
read with `torch.load(weights_only=True)`, which refuses anything but tensors and containers (never an
arbitrary pickle). Converting it once gives a diffusers folder (config.json + safetensors) that loads with
`VDVAE.from_pretrained` like every other part.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fmri_diffusion.models.vdvae import IMAGENET64_DECODER, VDVAE, parse_blocks
from fmri_diffusion.priors.loading import BaseModelError
from fmri_eval.atomic import atomic_output_dir

_WRAPPER_PREFIX = "module."  # what DistributedDataParallel put before every key of the published file


def vdvae_latent_layers(path: str | Path) -> int:
    """How many latent layers the VDVAE at `path` has, read from a converted folder's config.json (a
    published checkpoint file: the ImageNet-64 model's), without loading its weights."""
    path = Path(path).expanduser()
    config = path / "config.json"
    blocks = IMAGENET64_DECODER
    if path.is_dir() and config.is_file():
        blocks = json.loads(config.read_text(encoding="utf-8")).get("dec_blocks", IMAGENET64_DECODER)
    return len(parse_blocks(blocks))


def load_vdvae(path: str | Path, *, config: dict | None = None) -> VDVAE:
    """A converted folder (config.json + weights), or a published checkpoint file with `config` (default:
    the ImageNet-64 model's), in eval mode."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelError(
                f"{path}: no config.json; pass the folder `python -m fmri_diffusion convert-vdvae` wrote, "
                "or the published .th checkpoint"
            )
        return VDVAE.from_pretrained(path, local_files_only=True).eval()
    if not path.is_file():
        raise BaseModelError(
            f"VDVAE weights {path} not found; pass the published imagenet64-iter-1600000-model-ema.th or "
            "a converted folder"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code in it, or not a torch file at all
        raise BaseModelError(
            f"{path}: not a plain VDVAE state dict ({type(error).__name__}); only tensors are read"
        ) from None
    state = {key.removeprefix(_WRAPPER_PREFIX): value for key, value in state.items()}
    model = VDVAE(**(config or {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # missing, unexpected or differently shaped tensors
        first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        raise BaseModelError(
            f"{path}: its tensors do not fit this VDVAE config ({first[:160]}); pass the checkpoint's own "
            "config"
        ) from None
    return model.eval()


def convert_vdvae(checkpoint: str | Path, out_dir: str | Path, *, config: dict | None = None) -> Path:
    """Write the published checkpoint as a diffusers folder (safetensors), whole or not at all; a folder
    already there is replaced only if it is an earlier conversion (never, say, the Versatile Diffusion
    folder it was meant to go into)."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()) and not _is_vdvae_folder(out_dir):
        raise BaseModelError(
            f"{out_dir} exists and is not a VDVAE folder; name a new folder (e.g. {out_dir / 'vdvae'})"
        )
    model = load_vdvae(checkpoint, config=config)
    with atomic_output_dir(out_dir) as staging:
        model.save_pretrained(staging)
    return Path(out_dir)


def _is_vdvae_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("_class_name") == VDVAE.__name__
    except (OSError, ValueError):
        return False


def read_config(path: str | Path | None) -> dict | None:
    """A VDVAE config.json (for checkpoints that are not the ImageNet-64 model), or None."""
    if path is None:
        return None
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise BaseModelError(f"cannot read the VDVAE config {path} ({error})") from None
    return {key: value for key, value in config.items() if not key.startswith("_")}
