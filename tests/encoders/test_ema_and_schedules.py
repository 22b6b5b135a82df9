"""The training loop's own EMA and schedules against diffusers', which they replace to spare each training
process diffusers' import: the same weights to the last bit, the same rates, and old checkpoints load."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from fmri_encoders.training.ema import ExponentialMovingAverage
from fmri_encoders.training.optim import make_schedule


def _weights() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(5, 7)), torch.nn.Parameter(torch.randn(3))]


def _nudge(weights: list[torch.nn.Parameter]) -> None:
    with torch.no_grad():
        for weight in weights:
            weight.add_(0.1 * torch.randn_like(weight))


def test_the_average_is_diffusers_ema_to_the_last_bit_and_resumes_from_its_state():
    weights = _weights()
    theirs, ours = EMAModel(weights, decay=0.999, foreach=True), ExponentialMovingAverage(weights, 0.999)
    for _ in range(200):
        _nudge(weights)
        theirs.step(weights)
        ours.step(weights)
    assert all(torch.equal(a, b) for a, b in zip(theirs.shadow_params, ours.shadow_params, strict=True))
    assert ours.shadow_params[0].sub(weights[0]).abs().max() > 1e-3  # an average, not the last weights

    resumed = ExponentialMovingAverage(weights, 0.5)
    resumed.load_state_dict(theirs.state_dict())  # a checkpoint written with EMAModel, copied as it loads
    assert not any(a is b for a, b in zip(theirs.shadow_params, resumed.shadow_params, strict=True))
    _nudge(weights)
    theirs.step(weights)
    resumed.step(weights)
    assert resumed.decay == 0.999
    assert all(torch.equal(a, b) for a, b in zip(theirs.shadow_params, resumed.shadow_params, strict=True))

    ours.copy_to(weights)
    assert torch.equal(weights[1].detach(), ours.shadow_params[1])


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_schedules_are_diffusers_rate_for_rate(schedule):
    weights = _weights()
    theirs_optimizer, ours_optimizer = torch.optim.SGD(weights, lr=0.1), torch.optim.SGD(weights, lr=0.1)
    theirs = (
        get_cosine_schedule_with_warmup(theirs_optimizer, 7, 50)
        if schedule == "cosine"
        else get_constant_schedule_with_warmup(theirs_optimizer, 7)
    )
    ours = make_schedule(ours_optimizer, SimpleNamespace(warmup_steps=7, max_steps=50, schedule=schedule))
    rates = []
    for _ in range(60):
        assert ours.get_last_lr() == theirs.get_last_lr()
        rates.append(ours.get_last_lr()[0])
        for optimizer, scheduler in ((theirs_optimizer, theirs), (ours_optimizer, ours)):
            optimizer.step()
            scheduler.step()
    assert rates[0] == 0.0
    assert max(rates) == pytest.approx(0.1)
    assert (rates[50] == 0.0) == (schedule == "cosine")  # max_steps
    assert ours.state_dict() == theirs.state_dict()  # checkpointed schedules load either way
