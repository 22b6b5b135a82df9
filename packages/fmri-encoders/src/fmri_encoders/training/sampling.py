"""Where the training loop's mini-batches come from: in-memory tensors, drawn by a checkpointable generator.

`BatchSampler` draws with replacement (a step budget, the diffusion models); `EpochSampler` visits every
trial once per epoch (an epoch budget, the small regression and contrastive models). Both save their
position with the loop's checkpoints, so a resumed run draws the batches the uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch

from fmri_data.errors import DataError

Batch = dict[str, torch.Tensor]
Augment = Callable[[Batch, torch.Generator], Batch]


class Sampler(Protocol):
    """What the loop draws from: endless batches and a state (under `accelerate launch` every process
    draws the same, fmri_encoders.training.sharding)."""

    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _common_length(tensors: Mapping[str, torch.Tensor]) -> int:
    sizes = {len(t) for t in tensors.values()}
    if len(sizes) != 1:
        raise ValueError(f"all tensors need the same first dimension, got {sorted(sizes)}")
    return sizes.pop()


class BatchSampler:
    """Random mini-batches (with replacement across epochs) from in-memory tensors, checkpointable.

    `augment(batch, generator)` may transform each batch (e.g. joint random shifts of image and condition).
    Its generator state is saved with the checkpoints, so a resumed run draws the same batches.
    """

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        batch_size: int,
        *,
        seed: int = 0,
        augment: Augment | None = None,
    ) -> None:
        self.n = _common_length(tensors)
        self.tensors = dict(tensors)
        self.batch_size = batch_size
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self) -> Batch:
        index = torch.randint(0, self.n, (self.batch_size,), generator=self.generator)
        batch = {name: tensor[index] for name, tensor in self.tensors.items()}
        return self.augment(batch, self.generator) if self.augment else batch

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class EpochSampler:
    """Every trial once per epoch, in shuffled mini-batches (without replacement), checkpointable.

    pools: one set of tensors, or a sequence of several (e.g. one per subject, whose voxel counts differ).
    A batch never mixes pools; with a sequence it names its pool's index as `batch["pool"]`. Each pool is
    cut into round(n / batch_size) batches of near-equal size, never a lone trailing trial (a contrastive
    loss needs negatives in every batch), and an epoch visits the batches of all pools in shuffled order:
    `steps_per_epoch` of them. `augment` as in BatchSampler.
    """

    def __init__(
        self,
        pools: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
        batch_size: int,
        *,
        seed: int = 0,
        augment: Augment | None = None,
    ) -> None:
        self._tags_pool = not isinstance(pools, Mapping)
        self.pools = [dict(pool) for pool in (pools if self._tags_pool else [pools])]
        if not self.pools:
            raise DataError("EpochSampler needs at least one pool of tensors")
        self.sizes = [_common_length(pool) for pool in self.pools]
        if min(self.sizes) == 0:
            raise DataError("every pool needs at least one trial")
        self.batch_size = batch_size
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = sum(self._n_batches(n) for n in self.sizes)
        self._plan: list[tuple[int, torch.Tensor]] = []
        self._plan_state: torch.Tensor | None = None  # the generator as it was when the plan was drawn
        self._position = 0

    def _n_batches(self, n: int) -> int:
        return max(1, round(n / self.batch_size))

    def _draw_plan(self) -> list[tuple[int, torch.Tensor]]:
        batches = []
        for pool, n in enumerate(self.sizes):
            order = torch.randperm(n, generator=self.generator)
            batches += [(pool, chunk) for chunk in order.tensor_split(self._n_batches(n))]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]

    def __next__(self) -> Batch:
        if self._position == len(self._plan):
            self._plan_state = self.generator.get_state()
            self._plan, self._position = self._draw_plan(), 0
        pool, index = self._plan[self._position]
        self._position += 1
        batch = {name: tensor[index] for name, tensor in self.pools[pool].items()}
        if self._tags_pool:
            batch["pool"] = torch.tensor(pool)
        return self.augment(batch, self.generator) if self.augment else batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch's plan is stored as the generator state it was drawn from, and redrawn on load."""
        return {
            "generator": self.generator.get_state(),
            "plan_generator": self._plan_state,
            "position": self._position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._plan_state, self._plan = state["plan_generator"], []
        if self._plan_state is not None:
            self.generator.set_state(self._plan_state)
            self._plan = self._draw_plan()
        self.generator.set_state(state["generator"])
        self._position = state["position"]
