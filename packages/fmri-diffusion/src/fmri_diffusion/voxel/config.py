"""The YAML settings of an fMRI latent-diffusion run, checked and typed before any work starts.

    data: sim | digit69 | miyawaki | a .mat file | an aligned .npz   (see fmri_data.patterns)
    seed: 0
    device: auto
    model: {latent_dim, hidden, dropout, beta, denoiser_width, denoiser_blocks, schedule, sampler,
            num_inference_steps}
    training: {vae_steps, ddpm_steps, batch_size, learning_rate, mixed_precision}

Unknown keys and wrongly typed values are errors that name the key: a typo must not silently train with a
default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import yaml

from fmri_data.errors import DataError
from fmri_diffusion.schedulers import Sampler, Schedule
from fmri_diffusion.voxel.ldm import FmriLDMConfig
from fmri_encoders.runtime import DEVICES, device_choice

_COUNT, _NUMBER, _TEXT, _COUNTS = (
    "a whole number >= 1",
    "a number",
    "a string",
    "a list of whole numbers >= 1",
)
_MODEL_TYPES = {
    "latent_dim": _COUNT,
    "hidden": _COUNTS,
    "dropout": _NUMBER,
    "beta": _NUMBER,
    "denoiser_width": _COUNT,
    "denoiser_blocks": _COUNT,
    "schedule": _TEXT,
    "sampler": _TEXT,
    "num_inference_steps": _COUNT,
}
_TRAINING_TYPES = {
    "vae_steps": _COUNT,
    "ddpm_steps": _COUNT,
    "batch_size": _COUNT,
    "learning_rate": _NUMBER,
    "mixed_precision": _TEXT,
}
_SEED = "a whole number >= 0"
_TOP_TYPES = {"data": _TEXT, "seed": _SEED, "device": _TEXT}
_CHOICES = {
    "schedule": get_args(Schedule),
    "sampler": get_args(Sampler),
    "mixed_precision": ("no", "fp16", "bf16"),
}


def _is_whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _typed(value: Any, expected: str, key: str, where: str) -> Any:
    """`value` as the setting at `where` needs it, or a DataError naming the setting, the type and the value.

    Numbers may be written as YAML strings ("1e-3" is one in YAML 1.1); nothing else is converted.
    """
    if expected == _COUNT and _is_whole(value, 1):
        return value
    if expected == _SEED and _is_whole(value, 0):
        return value
    if expected == _COUNTS and isinstance(value, list) and value and all(_is_whole(v, 1) for v in value):
        return tuple(value)
    if expected == _TEXT and isinstance(value, str):
        if key in _CHOICES and value not in _CHOICES[key]:
            raise DataError(f"{where} must be one of {list(_CHOICES[key])}, got {value!r}")
        if key == "device":
            try:
                device_choice(value)
            except DataError:
                raise DataError(f"{where} must be one of {list(DEVICES)}, got {value!r}") from None
        return value
    if expected == _NUMBER and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if math.isfinite(number) and number >= 0 and (key != "dropout" or number < 1):
            return number
        expected = "a number in [0, 1)" if key == "dropout" else "a finite number >= 0"
    raise DataError(f"{where} must be {expected}, got {value!r}")


def _section(raw: Any, types: Mapping[str, str], where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DataError(f"{where} must be a mapping of settings, got {raw!r}")
    _check_keys(raw, set(types), where)
    return {key: _typed(value, types[key], key, f"{where}.{key}") for key, value in raw.items()}


@dataclass(frozen=True)
class JobConfig:
    """Where the patterns come from, the seed, the device, and the model with both stages' training."""

    data: str = "sim"
    seed: int = 0
    device: str = "auto"
    model: FmriLDMConfig = field(default_factory=FmriLDMConfig)


def load_config(path: str | Path) -> JobConfig:
    """Read and check a YAML config; unknown keys are errors (a typo must not silently use a default)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such config file; check the path")
    text = path.read_text()
    if not text.strip():
        raise DataError(
            f"{path}: the config is empty; write its settings (the example: apps/configs/fmri_ldm.yaml)"
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from error
    if not isinstance(raw, Mapping):
        raise DataError(f"{path}: the config must be a mapping of settings, got {type(raw).__name__}")
    return config_from_mapping(raw, source=str(path))


def config_from_mapping(raw: Mapping[str, Any], source: str = "config") -> JobConfig:
    """A JobConfig from parsed YAML: unknown keys and wrongly typed values are refused, naming the key."""
    _check_keys(raw, {*_TOP_TYPES, "model", "training"}, source)
    top = {
        key: _typed(raw[key], expected, key, f"{source}: {key}")
        for key, expected in _TOP_TYPES.items()
        if key in raw
    }
    model_settings = _section(raw.get("model"), _MODEL_TYPES, f"{source}: model")
    training = _section(raw.get("training"), _TRAINING_TYPES, f"{source}: training")
    model = replace(FmriLDMConfig(), **model_settings)
    shared = {k: training[k] for k in ("batch_size", "mixed_precision", "learning_rate") if k in training}
    model = replace(
        model,
        vae_training=replace(model.vae_training, **shared, max_steps=training.get("vae_steps", 2000)),
        ddpm_training=replace(model.ddpm_training, **shared, max_steps=training.get("ddpm_steps", 3000)),
    )
    return JobConfig(model=model, **top)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown setting(s) {unknown}; allowed: {sorted(allowed)}")
