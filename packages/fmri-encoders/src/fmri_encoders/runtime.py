"""Where torch training runs: the process's one accelerate state, and each fit's device within it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState

from fmri_data.errors import DataError


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "cpu"; an unusable choice is a one-line error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    if device not in ("cpu", "cuda"):
        raise DataError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return device


def make_accelerator(
    device: str = "auto", mixed_precision: str = "no", **options: Any
) -> tuple[Accelerator, torch.device]:
    """An Accelerator for one fit, and the device the fit trains on; a fit this process cannot run (its
    device or precision conflicts with the launch's) is one DataError.

    accelerate keeps one state per process, fixed by its first Accelerator: a later one with other `cpu` or
    `mixed_precision` arguments is refused, and there is no public reset. So no fit passes them: the state is
    the launch's (`accelerate launch` flags and config, else accelerate's defaults), and the training loop
    moves the model to the fit's device and applies the fit's precision itself. In a single process, with
    nothing to distribute, every fit thus runs on its own device in its own precision. A data-parallel
    launch trains on its processes' devices in its precision, and a state that holds a precision (a
    launcher's --mixed_precision) makes accelerate autocast every model it prepares; a fit must match them.
    `options` go to Accelerator as they are (gradient_accumulation_steps, project_dir, log_with, ...).
    """
    accelerator = Accelerator(**options)
    launched = accelerator.num_processes > 1
    held = accelerator.mixed_precision
    if held != mixed_precision and (launched or held != "no"):
        raise DataError(
            f"this process computes in mixed precision {held!r} (accelerate launch --mixed_precision or "
            f"ACCELERATE_MIXED_PRECISION) but the model trains in {mixed_precision!r}; "
            "launch with the model's precision or set the model's mixed_precision to the launch's"
        )
    if not launched:
        return accelerator, torch.device(resolve_device(device))
    if device not in ("auto", accelerator.device.type):
        raise DataError(
            f"device {device!r} was asked for but this launch trains on {accelerator.device.type}; "
            f"use 'auto' or {accelerator.device.type!r}"
        )
    return accelerator, accelerator.device


def derived_seed(*keys: int) -> int:
    """A 63-bit seed for one stream (a process, a sample of a trial) from integer keys, via numpy's
    SeedSequence: well mixed, and the same on every platform and Python version (unlike hash())."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def on_main_process(write: Callable[[], None]) -> None:
    """Run `write` on the main process only and let the others wait for it: under `accelerate launch` every
    process fits the same model, and two of them swapping one folder into place would collide."""
    state = PartialState()
    if state.is_main_process:
        write()
    state.wait_for_everyone()
