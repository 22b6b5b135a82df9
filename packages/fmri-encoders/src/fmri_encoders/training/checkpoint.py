"""A training checkpoint without pickle: every tensor in safetensors, everything else in JSON.

accelerate's `save_state` pickles optimizer, sampler and RNG states, and `load_state` unpickles them, so a
work folder shared with someone could run their code on `--resume`. Here each state dict is split into its
tensors and a JSON tree that says where each tensor goes back; tuples, integer keys and numpy arrays (as JSON
lists) are marked so the round trip is exact. The pair is written and read by fmri_encoders.persistence, so
loading never calls `torch.load`.

Files: `state.json` + `state.safetensors` (model, optimizer, LR schedule, EMA, loss scaler, batch sampler,
noise and global RNG states), written by the main process alone: under `accelerate launch` every process
holds the same of each (fmri_encoders.training.sharding), so any process count can resume them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors

_TENSOR, _ARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"


def split_state(value: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """A JSON-ready copy of `value` whose tensors and arrays are moved into `tensors` (by dotted key)."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().to("cpu", copy=True).contiguous()  # copies: no shared storage
        return {_TENSOR: prefix}
    if isinstance(value, np.ndarray):  # numpy's RNG state: 624 uint32 words, small enough for JSON
        return {
            _ARRAY: {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
        }
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: split_state(item, tensors, f"{prefix}.{key}") for key, item in value.items()}
        return {_ITEMS: [[key, split_state(item, tensors, f"{prefix}.{key}")] for key, item in value.items()]}
    if isinstance(value, tuple | list):
        items = [split_state(item, tensors, f"{prefix}.{i}") for i, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(
        f"cannot checkpoint a {type(value).__name__} at {prefix or 'the top level'} without pickle"
    )


def join_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `split_state`."""
    if isinstance(tree, list):
        return [join_state(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if _TENSOR in tree:
        return tensors[tree[_TENSOR]]
    if _ARRAY in tree:
        array = tree[_ARRAY]
        return np.asarray(array["data"], dtype=np.dtype(array["dtype"])).reshape(array["shape"])
    if _TUPLE in tree:
        return tuple(join_state(item, tensors) for item in tree[_TUPLE])
    if _ITEMS in tree:
        return {key: join_state(item, tensors) for key, item in tree[_ITEMS]}
    return {key: join_state(item, tensors) for key, item in tree.items()}


def save_states(folder: Path, name: str, states: dict[str, Any]) -> None:
    """Write `states` (component name -> state dict) as `name.json` + `name.safetensors` in `folder`."""
    tensors: dict[str, torch.Tensor] = {}
    tree = {key: split_state(state, tensors, key) for key, state in states.items()}
    save_settings_and_tensors(folder, name, tree, tensors)


def load_states(folder: Path, name: str) -> dict[str, Any]:
    """Read what `save_states` wrote; a checkpoint that lacks the files is one clear error."""
    try:
        tree, tensors = load_settings_and_tensors(folder, name)
    except FileNotFoundError as missing:
        raise FileNotFoundError(
            f"{missing}; a checkpoint written by an older version (pickled state, which is never loaded) "
            "lacks it: start the training afresh"
        ) from None
    return join_state(tree, tensors)


def global_rng_states(device: torch.device) -> dict[str, Any]:
    """Python's, numpy's and torch's global generators (dropout draws from torch's), and the generator of
    this process's GPU alone, so a run may resume on a machine with another number of GPUs."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global generator is what we restore)
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_global_rng_states(states: dict[str, Any], device: torch.device) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
