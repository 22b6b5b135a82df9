"""Data parallelism that does not change the result: every process draws the same global batch and the
same noise, and computes the loss on its own slice of both.

`TrainingConfig.batch_size` is the batch of one micro-step over all processes. Each process keeps the same
sampler and noise generator (same seed), so they all draw the same global batch and the same noise for it;
process r then trains on rows [start_r, stop_r). With each process's mean loss weighted by its share of the
rows, the gradient the data-parallel wrapper averages is the gradient of the global batch's mean loss: N
processes give what one process gives, up to floating-point summation order (and the masks of dropout
layers, which draw from torch's global generator), and a checkpoint resumes under any process count
(every stream it holds is the same on every process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fmri_encoders.runtime import unshareable_batch
from fmri_encoders.training.sampling import Batch


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count`: which rows of a global batch it trains on."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"process {self.index} of {self.count} does not exist")

    def bounds(self, global_size: int) -> tuple[int, int]:
        """Near-equal contiguous slices (sizes differ by at most one row)."""
        if global_size < self.count:
            raise unshareable_batch(global_size, self.count)
        return self.index * global_size // self.count, (self.index + 1) * global_size // self.count

    def take(self, batch: Batch) -> tuple[Batch, int]:
        """This process's rows of every per-row tensor (0-d tags such as a pool index stay whole), and
        the global batch size."""
        sizes = {len(t) for t in batch.values() if t.dim() > 0}
        if len(sizes) != 1:
            raise ValueError(f"a batch's tensors need one first dimension to shard, got {sorted(sizes)}")
        global_size = sizes.pop()
        start, stop = self.bounds(global_size)
        return {k: t[start:stop] if t.dim() > 0 else t for k, t in batch.items()}, global_size

    def loss_weight(self, global_size: int) -> float:
        """Factor on this process's mean loss so that the average over processes is the global mean."""
        start, stop = self.bounds(global_size)
        return (stop - start) * self.count / global_size


class BatchNoise:
    """A loss's random draws whose first dimension runs over the batch rows, drawn for the whole global
    batch from the generator the loop checkpoints and cut to this process's rows.

    With one process (or a loss that is not sharded) it draws exactly what the generator alone would.
    """

    def __init__(
        self, generator: torch.Generator, shard: Shard | None = None, global_size: int | None = None
    ) -> None:
        self.generator, self.shard = generator, shard or Shard()
        self.global_size = global_size

    def _cut(self, draw: torch.Tensor, local_size: int) -> torch.Tensor:
        if self.global_size is None:
            return draw
        start, stop = self.shard.bounds(self.global_size)
        if stop - start != local_size:
            raise ValueError(f"noise for {local_size} rows asked, but this process holds {stop - start}")
        return draw[start:stop]

    def _global(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(shape)
        if not shape:
            raise ValueError("a draw of BatchNoise needs the batch rows as its first dimension")
        return shape if self.global_size is None else (self.global_size, *shape[1:])

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        """Standard normal draws of `shape` ([rows, ...])."""
        return self._cut(torch.randn(self._global(shape), generator=self.generator), shape[0])

    def rand(self, shape: Sequence[int]) -> torch.Tensor:
        """Uniform [0, 1) draws of `shape` ([rows, ...])."""
        return self._cut(torch.rand(self._global(shape), generator=self.generator), shape[0])

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """Integers in [low, high) of `shape` ([rows, ...])."""
        return self._cut(torch.randint(low, high, self._global(shape), generator=self.generator), shape[0])
