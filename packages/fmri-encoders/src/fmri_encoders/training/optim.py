"""The optimizer and learning-rate schedule a TrainingConfig asks for."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

if TYPE_CHECKING:
    from fmri_encoders.training.loop import TrainingConfig

SCHEDULES = ("cosine", "constant")


def _adafactor(parameters: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """transformers' Adafactor with `lr` an absolute step, as AdamW's is. torch's own scales each step by
    the weight's RMS (at least 1e-3), so zero-initialised weights (LoRA's B, ControlNet's zero convolutions)
    would barely move at a learning rate tuned for AdamW."""
    from transformers.optimization import Adafactor

    return Adafactor(parameters, lr=lr, weight_decay=weight_decay, scale_parameter=False, relative_step=False)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adafactor": _adafactor,
}


def make_optimizer(parameters: list[nn.Parameter], config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW, or Adafactor: factored second moments of each weight matrix (a row and a column of state
    instead of AdamW's two moments per weight) and no first moment, less than half AdamW's memory for the
    optimizer and weights together. With `decay_matrices_only`, weight decay shrinks weight matrices and
    kernels alone: shrinking biases, norm gains or a learned temperature regularises nothing."""
    optimizer = OPTIMIZERS[config.optimizer]
    if not config.decay_matrices_only:
        return optimizer(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    groups = [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
    return optimizer(groups, lr=config.learning_rate)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> LambdaLR:
    """A linear warmup over `warmup_steps`, then a cosine decay to 0 at max_steps, or a constant rate (the
    schedules of diffusers and transformers, whose modules take seconds to import)."""
    warmup, total, cosine = config.warmup_steps, config.max_steps, config.schedule == "cosine"

    def factor(step: int) -> float:  # a plain function: LambdaLR's state then holds no copy of it
        if step < warmup:
            return step / max(1, warmup)
        if not cosine:
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return LambdaLR(optimizer, factor)
