"""A fit's mixed precision, applied by the loop itself.

accelerate's mixed precision is one setting of the whole process, fixed by its first Accelerator, while one
process trains many models (the fold runner, a test session), each in the precision of its own config.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from fmri_data.errors import DataError

PRECISIONS = ("no", "bf16", "fp16")
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(mixed_precision: str, device_type: str) -> None:
    """One line for a precision the device cannot train in: fp16 trains with a loss scaler, which this loop
    runs on CUDA GPUs only (bf16 needs none)."""
    if mixed_precision == "fp16" and device_type != "cuda":
        raise DataError(
            f"mixed_precision 'fp16' needs a CUDA GPU, and this fit runs on {device_type}; use 'bf16' or 'no'"
        )


def half_dtype(mixed_precision: str) -> torch.dtype | None:
    """The dtype `mixed_precision` computes in (None for "no", full precision)."""
    return _HALF.get(mixed_precision)


class Precision:
    """autocast around the forward pass and loss, and for fp16 a loss scaler: small fp16 gradients would
    underflow to zero unscaled. The scaler's state (its scale and growth count) goes into the checkpoints."""

    def __init__(self, mixed_precision: str, device: torch.device) -> None:
        check_precision(mixed_precision, device.type)
        self.device_type = device.type
        self.dtype = half_dtype(mixed_precision)
        self.scaler = torch.amp.GradScaler(device.type) if mixed_precision == "fp16" else None

    def autocast(self) -> AbstractContextManager[Any]:
        return nullcontext() if self.dtype is None else torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size, so that clipping sees them as they are."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """optimizer.step(), and whether it was taken: under fp16 it is skipped when the gradients overflowed
        (the scaler then lowers its scale), and the learning-rate schedule should wait for it."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale
