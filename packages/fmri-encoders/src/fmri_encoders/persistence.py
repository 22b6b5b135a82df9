"""Settings and tensors saved without pickle: settings as JSON, tensors as safetensors, nothing else.

Every model, fitted part and training checkpoint of the workspace that is not a diffusers `save_pretrained`
folder saves through here, so all of them get the same guarantees: loading never runs code (no pickle), the
settings are plain JSON (no NaN or inf, which JSON does not define, and nothing that would come back as
something else), and a missing or damaged file is one clear error that names it.

A saved pair is `<name>.json` + `<name>.safetensors` in one folder (a checkpoint holds several pairs). Each
file is written under a temporary name and renamed over the final one, so no file is ever seen half-written;
the tensors go first, so a fresh pair exists only once its settings appear. Two renames are not one: a reader
racing a writer that *overwrites* a pair could see new tensors beside old settings. Folders that are
rewritten while others may read them are therefore staged whole and renamed (fmri_eval.atomic's
`atomic_output_dir` for fitted methods, the training loop's `step-N.partial` for checkpoints).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fmri_data.errors import DataError
from fmri_eval.atomic import atomic_write, atomic_write_text

Tensors = Mapping[str, torch.Tensor | np.ndarray]


def save_settings_and_tensors(
    folder: str | Path, name: str, settings: dict[str, Any], tensors: Tensors
) -> None:
    """Write `<name>.json` (settings) and `<name>.safetensors` (torch tensors or numpy arrays) into `folder`,
    created if missing. Tuples in the settings come back as lists, tensors as torch tensors on the CPU."""
    folder = Path(folder)
    text = _settings_text(settings, f"{name}.json")  # refused before anything is written
    on_cpu = {key: _cpu_tensor(value, key) for key, value in tensors.items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{name}.safetensors", lambda path: save_file(on_cpu, str(path)))
    atomic_write_text(folder / f"{name}.json", text)


def load_settings_and_tensors(
    folder: str | Path, name: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read what `save_settings_and_tensors` wrote: (settings, tensors as CPU torch tensors)."""
    folder = Path(folder)
    settings_file, tensors_file = folder / f"{name}.json", folder / f"{name}.safetensors"
    for path in (settings_file, tensors_file):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {folder} holds no saved {name} "
                f"({settings_file.name} + {tensors_file.name})"
            )
    settings = load_settings(settings_file)
    try:
        tensors = load_file(str(tensors_file))
    except SafetensorError as error:
        raise DataError(
            f"{tensors_file} is not a readable safetensors file ({error}); save it again"
        ) from None
    return settings, tensors


def save_settings(path: str | Path, settings: dict[str, Any]) -> None:
    """Write `settings` alone as JSON (renamed into place), refused if JSON would not give them back."""
    path = Path(path)
    text = _settings_text(settings, path.name)
    atomic_write_text(path, text)


def load_settings(path: str | Path) -> dict[str, Any]:
    """Settings written by `save_settings`; a file edited into invalid JSON or NaN is refused, not guessed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}); save it again"
        ) from None
    if not isinstance(settings, dict):
        raise DataError(f"{path} holds a JSON {type(settings).__name__}, not an object of settings")
    _check_json(settings, path.name)  # Python's json reads NaN and Infinity, which no other reader does
    return settings


def _settings_text(settings: dict[str, Any], where: str) -> str:
    _check_json(settings, where)
    return json.dumps(settings, indent=2, allow_nan=False) + "\n"


def _check_json(value: Any, where: str) -> None:
    """Refuse what JSON cannot hold as it is: NaN and inf, keys that are not strings (json would turn them
    into strings), and objects other than None, booleans, numbers, strings, lists, tuples and dicts."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"{where} is {value}: settings are saved as JSON, which has no NaN or inf")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}; JSON keys are strings")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
    elif not (value is None or isinstance(value, str | int)):
        raise TypeError(f"{where} is a {type(value).__name__}, which JSON cannot hold; save it as a tensor")


def _cpu_tensor(value: torch.Tensor | np.ndarray, key: str) -> torch.Tensor:
    """A contiguous CPU torch tensor (safetensors' requirement); numpy arrays are shared, not copied."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value if value.flags.c_contiguous else value.copy(order="C"))
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").contiguous()
    raise TypeError(f"tensor {key!r} is a {type(value).__name__}; save torch tensors or numpy arrays")
