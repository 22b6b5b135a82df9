"""Where a fit's weights live while it trains: whole on every process (data parallel), or one slice of each
on every process (fully sharded, `accelerate launch --use_fsdp --fsdp_version 2`).

Full sharding (torch's FSDP2, `fully_shard`) keeps 1/N of every weight, gradient and optimizer state on each
of N processes, so a model whose training state does not fit one GPU trains on several. accelerate's own FSDP
path is not used: on CPU processes it silently falls back to data parallelism, it shards the model in place
(which cannot be undone, and sampling needs whole weights) and it checkpoints with pickle. Here a copy of the
model is sharded on the launch's process group (gloo or NCCL), and whole weights are gathered back: into the
caller's model at the end and for validation, and into checkpoints laid out as an unsharded fit's, so that a
sharded checkpoint resumes under any process count, sharded or not.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fmri_data.errors import DataError
from fmri_encoders.runtime import env_flag


def check_full_shard_launch(mixed_precision: str, optimizer: str) -> None:
    """One line for an FSDP launch this loop cannot honour, naming the setting to change."""
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise DataError(
            "this launch asks for FSDP version 1; the training loop shards with torch's fully_shard: "
            "launch with --fsdp_version 2 (or fsdp_version: 2 in the config file)"
        )
    if env_flag("FSDP_OFFLOAD_PARAMS"):
        raise DataError("FSDP parameter offloading is not supported; launch with --fsdp_offload_params false")
    if env_flag("FSDP_ACTIVATION_CHECKPOINTING"):
        raise DataError(
            "FSDP's activation checkpointing is not used; launch without it and pass the app's "
            "--gradient-checkpointing"
        )
    if optimizer != "adamw":
        raise DataError(
            f"a fully sharded fit trains with adamw, not {optimizer}: sharding already divides the "
            "optimizer's state among the processes"
        )
    if mixed_precision == "fp16":
        raise DataError("a fully sharded fit trains in fp32 or bf16, not fp16; use --mixed-precision bf16")


class Replicated:
    """Data parallelism: every process holds the whole model, the wrapper averages gradients."""

    shards = 1

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.trained = model.to(device)

    def wrap(self, objective: nn.Module, accelerator: Any) -> nn.Module:
        """Wrapped for data parallelism across the launch's processes; one process has no one to average
        with and trains `objective` as it is (a one-process `--use_fsdp` launch on a GPU still carries
        accelerate's FSDP plugin, which refuses a model prepared without its optimizer)."""
        if accelerator.num_processes == 1:
            return objective
        # placed here, not by accelerate, whose device is the process's
        return accelerator.prepare_model(objective, device_placement=False)

    def gather(self, tree: Any) -> Any:
        return tree

    def scatter_like(self, tree: Any, like: Any) -> Any:
        return tree

    def average_unsharded_gradients(self) -> None:
        """Nothing to do: the data-parallel wrapper averages every gradient."""

    def clip(self, accelerator: Any, parameters: list[nn.Parameter], max_norm: float) -> None:
        accelerator.clip_grad_norm_(parameters, max_norm)

    def whole_model(self, learned: Callable[[nn.Module], dict[str, torch.Tensor]]) -> nn.Module:
        return self.trained

    def park_whole_model(self) -> None:
        """Nothing to do: the whole model is the one that trains."""

    def finish(self, learned: Callable[[nn.Module], dict[str, torch.Tensor]]) -> nn.Module:
        return self.model


class FullShard:
    """A sharded copy of `model` trains; the caller's model waits on the CPU for the whole weights.

    Every member of a ModuleList or ModuleDict (a UNet's down and up blocks, a transformer's layers) that
    holds parameters becomes one unit, gathered for its forward and backward pass alone; the rest of the
    model is the root unit, gathered while the loss runs (fmri_encoders.training.loop._Objective), so the
    loss may call the model's own methods.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        self.model, self.device = model.to("cpu"), device
        self._fully_shard = fully_shard
        self._reshard = env_flag("FSDP_RESHARD_AFTER_FORWARD", default=True)
        self.shards = dist.get_world_size()
        self._mesh = init_device_mesh(device.type, (self.shards,))
        self.trained = copy.deepcopy(self.model)
        # FSDP2 cannot shard a scalar (a learned temperature or scale): it stays whole on every process
        self._unsharded = [p for p in self.trained.parameters() if p.ndim == 0]
        for parameter in self._unsharded:
            parameter.data = parameter.data.to(device)
        for unit in _units(self.trained):
            self._shard(unit)

    def _shard(self, module: nn.Module) -> None:
        self._fully_shard(
            module, mesh=self._mesh, reshard_after_forward=self._reshard, ignored_params=set(self._unsharded)
        )

    def wrap(self, objective: nn.Module, accelerator: Any) -> nn.Module:
        """The loss and model as the root unit: its parameters move to this process's device."""
        self._shard(objective)
        return objective

    def average_unsharded_gradients(self) -> None:
        """The processes' mean gradient of the scalars FSDP does not manage (call after the backward pass
        of an update's last micro-batch)."""
        import torch.distributed as dist

        for parameter in self._unsharded:  # every process reduces each one, with or without a gradient
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad)  # a sum: gloo has no average
            parameter.grad /= self.shards

    def gather(self, tree: Any) -> Any:
        """Whole tensors for every sharded one in a state tree (a collective: every process calls it)."""
        from torch.distributed.tensor import DTensor

        if isinstance(tree, DTensor):  # one whole tensor at a time on the device, all of them on the CPU
            return tree.full_tensor().cpu()
        if isinstance(tree, dict):
            return {key: self.gather(value) for key, value in tree.items()}
        if isinstance(tree, list | tuple):
            return type(tree)(self.gather(value) for value in tree)
        return tree

    def scatter_like(self, tree: Any, like: Any) -> Any:
        """`tree`'s whole tensors sharded as the matching tensors of `like` are (same nesting)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        if isinstance(like, DTensor) and isinstance(tree, torch.Tensor):
            return distribute_tensor(tree.to(like.device, like.dtype), like.device_mesh, like.placements)
        if isinstance(tree, dict) and isinstance(like, dict):
            return {key: self.scatter_like(value, like.get(key)) for key, value in tree.items()}
        if isinstance(tree, list | tuple) and isinstance(like, list | tuple):
            return type(tree)(self.scatter_like(v, w) for v, w in zip(tree, like, strict=True))
        return tree

    def clip(self, accelerator: Any, parameters: list[nn.Parameter], max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)  # the norm of the whole gradient

    def whole_model(self, learned: Callable[[nn.Module], dict[str, torch.Tensor]]) -> nn.Module:
        """The caller's model on this process's device, holding the sharded copy's weights."""
        self.model.load_state_dict(self.gather(learned(self.trained)), strict=False)
        return self.model.to(self.device)

    def park_whole_model(self) -> None:
        """Back to the CPU after validation: the device's memory is the shards'."""
        self.model.to("cpu")

    def finish(self, learned: Callable[[nn.Module], dict[str, torch.Tensor]]) -> nn.Module:
        model = self.whole_model(learned)
        self.trained = None  # the shards go; the caller's model holds it all
        return model


def _units(model: nn.Module) -> list[nn.Module]:
    """The outermost members of ModuleLists and ModuleDicts that hold parameters (none inside another)."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList | nn.ModuleDict):
                found.extend(m for m in child.children() if any(True for _ in m.parameters()))
            else:
                visit(child)

    visit(model)
    return found
