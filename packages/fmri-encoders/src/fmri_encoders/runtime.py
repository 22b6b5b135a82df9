"""Where and in what precision torch training runs: one Accelerator per fit, seeded."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState, is_initialized

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


def make_accelerator(device: str = "auto", mixed_precision: str = "no", **options: Any) -> Accelerator:
    """An Accelerator on `device` ("auto", "cpu", "cuda") with `mixed_precision` ("no", "fp16", "bf16").

    `options` go to Accelerator as they are (gradient_accumulation_steps, project_config, log_with, ...).

    accelerate keeps one process-wide state: a second Accelerator with another precision, or on the CPU
    after a GPU, is refused, and one on a GPU after the CPU silently stays on the CPU. The fold runner (and a
    test session) trains many models in one process, so in a single-process run a state that does not match
    is reset first; accelerate has no public way to do that, and `_reset_state` is the one private call here
    (it goes once the loop places models and casts precision itself). A distributed launch keeps its state
    and gets accelerate's error.
    """
    cpu = resolve_device(device) == "cpu"
    if is_initialized() and PartialState().num_processes == 1:
        state = AcceleratorState()
        if (state.device.type == "cpu") != cpu or state.mixed_precision != mixed_precision:
            AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision, **options)


def derived_seed(*keys: int) -> int:
    """A 63-bit seed for one stream (a process, a sample of a trial) from integer keys, via numpy's
    SeedSequence: well mixed, and the same on every platform and Python version (unlike hash())."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))
