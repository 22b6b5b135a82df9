"""One global batch, cut among processes: the rows, the loss weights and the noise add up to one process's."""

import pytest
import torch

from fmri_data.errors import DataError
from fmri_encoders.training import BatchNoise, Shard


def test_shards_cover_the_batch_once_and_weight_the_mean_back_to_the_global_mean():
    batch = {"x": torch.arange(10.0), "pool": torch.tensor(1)}
    shards = [Shard(i, 3) for i in range(3)]
    taken = [shard.take(batch) for shard in shards]
    assert torch.equal(torch.cat([part["x"] for part, _ in taken]), batch["x"])
    assert all(size == 10 and part["pool"] == 1 for part, size in taken)
    means = [part["x"].mean() * shard.loss_weight(10) for (part, _), shard in zip(taken, shards, strict=True)]
    assert torch.stack(means).mean() == pytest.approx(batch["x"].mean())


def test_a_batch_smaller_than_the_launch_is_refused_in_one_line():
    with pytest.raises(DataError, match="batch of 2 cannot be shared by 4 processes"):
        Shard(0, 4).take({"x": torch.zeros(2)})


def test_each_process_draws_its_rows_of_the_noise_one_process_draws():
    alone = BatchNoise(torch.Generator().manual_seed(1))
    whole = (alone.randn((6, 2)), alone.rand((6,)), alone.randint(0, 9, (6, 1)))
    parts = []
    for index in range(2):
        noise = BatchNoise(torch.Generator().manual_seed(1), Shard(index, 2), global_size=6)
        parts.append((noise.randn((3, 2)), noise.rand((3,)), noise.randint(0, 9, (3, 1))))
    for k, drawn in enumerate(whole):
        assert torch.equal(torch.cat([part[k] for part in parts]), drawn)
    with pytest.raises(ValueError, match="noise for 4 rows"):
        BatchNoise(torch.Generator(), Shard(0, 2), global_size=6).randn((4,))
