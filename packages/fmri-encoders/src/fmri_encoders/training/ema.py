"""An exponential moving average of the trained weights, kept beside them and copied in at the end.

Written here rather than taken from diffusers' EMAModel, whose module alone takes 15 s to import (it loads
diffusers' models and torch's compiler) in every process that trains, even a tiny encoder's. It updates
the same way (the same warmup of the decay, the same fused arithmetic, so the same weights to the last
bit) and its state has the same keys, so checkpoints written with EMAModel resume here.
"""

from __future__ import annotations

from typing import Any

import torch


class ExponentialMovingAverage:
    """shadow <- shadow - (1 - d) (shadow - weight) after each update of the trained `parameters`, with the
    decay d warming up as (1 + t) / (10 + t) up to `decay` (0 at the first update: the shadow starts as the
    first updated weights)."""

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.optimization_step = 0
        self.shadow_params = [p.detach().clone() for p in parameters]

    def current_decay(self) -> float:
        step = self.optimization_step - 1
        return 0.0 if step <= 0 else min((1 + step) / (10 + step), self.decay)

    @torch.no_grad()
    def step(self, parameters: list[torch.nn.Parameter]) -> None:
        """One update; one fused kernel for all weights, not three per tensor (a small UNet's step on a
        GPU costs less than a Python loop over its tensors)."""
        self.optimization_step += 1
        shadows = self.shadow_params
        torch._foreach_sub_(shadows, torch._foreach_sub(shadows, parameters), alpha=1 - self.current_decay())

    @torch.no_grad()
    def copy_to(self, parameters: list[torch.nn.Parameter]) -> None:
        """The averaged weights into `parameters`, one tensor at a time (sharded tensors have no fused
        copy)."""
        for shadow, p in zip(self.shadow_params, parameters, strict=True):
            p.data.copy_(shadow.to(p.device).data)

    def to(self, device: torch.device | str) -> None:
        self.shadow_params = [p.to(device) for p in self.shadow_params]

    def state_dict(self) -> dict[str, Any]:
        """References, not copies, as torch's own state_dicts."""
        return {
            "decay": self.decay,
            "optimization_step": self.optimization_step,
            "shadow_params": self.shadow_params,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copies of `state`'s tensors, as torch's modules load theirs."""
        self.decay = float(state.get("decay", self.decay))
        self.optimization_step = int(state["optimization_step"])
        self.shadow_params = [p.detach().clone() for p in state["shadow_params"]]
