"""Saving a trained ConditionalVaeNet as safetensors weights + a JSON config (no pickle anywhere)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from fmri_diffusion.models.cvae import ConditionalVaeNet, CvaeConfig

_CONFIG_FILE = "cvae_config.json"
_WEIGHTS_FILE = "cvae_weights.safetensors"


def save_cvae(model: ConditionalVaeNet, directory: str | Path) -> Path:
    """Write cvae_config.json and cvae_weights.safetensors into `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, str(directory / _WEIGHTS_FILE))
    (directory / _CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))
    return directory


def load_cvae(directory: str | Path, device: str = "cpu") -> ConditionalVaeNet:
    """Rebuild a model written by save_cvae, in eval mode on `device`."""
    directory = Path(directory)
    for name in (_CONFIG_FILE, _WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing; is {directory} a saved CVAE?")
    model = ConditionalVaeNet(CvaeConfig(**json.loads((directory / _CONFIG_FILE).read_text())))
    model.load_state_dict(load_file(str(directory / _WEIGHTS_FILE), device=device))
    return model.to(device).eval()
