import pytest
import torch

from fmri_encoders.training import BatchSampler, EpochSampler
from fmri_encoders.training.checkpoint import load_states, save_states


def _draw(sampler, n):
    return [next(sampler) for _ in range(n)]


def test_an_epoch_visits_every_trial_once_in_balanced_batches():
    sampler = EpochSampler({"i": torch.arange(10), "x": torch.randn(10, 3)}, batch_size=4, seed=0)
    assert sampler.steps_per_epoch == 2  # round(10 / 4): two batches of 5, never a lone trailing trial
    for _ in range(3):
        batches = _draw(sampler, sampler.steps_per_epoch)
        assert [len(b["i"]) for b in batches] == [5, 5]
        assert sorted(torch.cat([b["i"] for b in batches]).tolist()) == list(range(10))
        assert "pool" not in batches[0]


def test_epochs_are_shuffled_differently():
    sampler = EpochSampler({"i": torch.arange(12)}, batch_size=4, seed=0)
    first, second = (torch.cat([b["i"] for b in _draw(sampler, 3)]) for _ in range(2))
    assert not torch.equal(first, second)


def test_several_pools_never_mix_and_name_their_pool():
    pools = [{"v": torch.arange(7)[:, None].expand(7, 2)}, {"v": 100 + torch.arange(3)[:, None].expand(3, 5)}]
    sampler = EpochSampler(pools, batch_size=4, seed=1)
    assert sampler.steps_per_epoch == 3  # 7 trials: 2 batches (4 + 3); 3 trials: 1 batch
    batches = _draw(sampler, 3)
    seen = {0: [], 1: []}
    for batch in batches:
        pool = int(batch["pool"])
        assert batch["v"].shape[1] == (2, 5)[pool]
        seen[pool] += batch["v"][:, 0].tolist()
    assert sorted(seen[0]) == list(range(7))
    assert sorted(seen[1]) == [100, 101, 102]


def test_bad_pools_are_refused():
    with pytest.raises(ValueError, match="same first dimension"):
        EpochSampler({"a": torch.zeros(3), "b": torch.zeros(4)}, batch_size=2)
    with pytest.raises(ValueError, match="at least one trial"):
        EpochSampler([{"a": torch.zeros(3)}, {"a": torch.zeros(0)}], batch_size=2)


def _noisy(batch, generator):
    """An augmentation drawing from the sampler's generator, between the draws of batch plans."""
    return batch | {"x": batch["x"] + torch.randn(batch["x"].shape, generator=generator)}


@pytest.mark.parametrize("drawn", [0, 2, 3, 4])  # before any epoch, mid-epoch, at its end, into the next
def test_a_saved_and_reloaded_epoch_sampler_continues_exactly(drawn, tmp_path):
    def make(seed):
        pools = [{"x": torch.randn(9, 2)}, {"x": torch.randn(5, 4)}]
        return EpochSampler(pools, batch_size=3, seed=seed, augment=_noisy)

    torch.manual_seed(0)
    original = make(seed=0)
    _draw(original, drawn)
    save_states(tmp_path, "sampler", {"sampler": original.state_dict()})  # the loop's pickle-free files
    expected = _draw(original, 6)
    torch.manual_seed(0)
    restored = make(seed=5)
    restored.load_state_dict(load_states(tmp_path, "sampler")["sampler"])
    for got, want in zip(_draw(restored, 6), expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key])


def test_the_batch_sampler_draws_with_replacement_as_before():
    sampler = BatchSampler({"i": torch.arange(4)}, batch_size=3, seed=0)
    expected = torch.randint(0, 4, (3,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(next(sampler)["i"], expected)
