"""The optimizer and learning-rate schedule a TrainingConfig asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

if TYPE_CHECKING:
    from fmri_encoders.training.loop import TrainingConfig

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adafactor": torch.optim.Adafactor}


def make_optimizer(parameters: list[nn.Parameter], config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW, or Adafactor (factored second moments, no first moment: a few bytes of state per weight
    matrix row and column instead of AdamW's 8 bytes per weight, which is what lets a whole SD-sized UNet
    fine-tune on a 12 GB card). With `decay_matrices_only`, weight decay shrinks weight matrices and kernels
    alone: shrinking biases, norm gains or a learned temperature regularises nothing."""
    optimizer = OPTIMIZERS[config.optimizer]
    if not config.decay_matrices_only:
        return optimizer(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    groups = [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
    return optimizer(groups, lr=config.learning_rate)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> LambdaLR:
    """A linear warmup over `warmup_steps`, then a cosine decay to 0 at max_steps, or a constant rate."""
    if config.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    return get_constant_schedule_with_warmup(optimizer, config.warmup_steps)
