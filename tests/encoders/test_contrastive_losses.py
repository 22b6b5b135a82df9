import math

import pytest
import torch

from fmri_encoders.contrastive import LogitScale, group_targets, info_nce, mix_pairs, mixco


def _scale(value: float) -> LogitScale:
    scale = LogitScale()
    with torch.no_grad():
        scale.log_scale.fill_(math.log(value))
    return scale


def test_info_nce_matches_a_hand_computation():
    brain = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    image = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised inside: rows become the unit vectors
    s = 2.0
    # logits = s * cosine = [[2, 0], [1.2, 1.6]]
    brain_to_image = (
        -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0)))
        - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))
    ) / 2
    image_to_brain = (
        -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.2)))
        - math.log(math.exp(1.6) / (math.exp(0.0) + math.exp(1.6)))
    ) / 2
    expected = (brain_to_image + image_to_brain) / 2
    loss = info_nce(brain, image, _scale(s)())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_the_temperature_is_learned_and_capped_at_100():
    scale = LogitScale(init_temperature=0.07)
    assert scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    info_nce(torch.randn(4, 3), torch.randn(4, 3), scale()).backward()
    assert scale.log_scale.grad is not None
    assert scale.log_scale.grad.abs().item() > 0
    assert _scale(1000.0)().item() == pytest.approx(100.0)


def test_group_targets_share_probability_among_repeats():
    targets = group_targets(torch.tensor([0, 1, 0]))
    torch.testing.assert_close(targets[0], torch.tensor([0.5, 0.0, 0.5]))
    torch.testing.assert_close(targets[1], torch.tensor([0.0, 1.0, 0.0]))


def test_mixco_targets_sum_to_one_and_lambda_one_is_plain_info_nce():
    torch.manual_seed(0)
    x, image = torch.randn(5, 6), torch.randn(5, 6)
    _, targets = mixco(x, torch.eye(5), alpha=0.15, prob=1.0)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(5))
    lam = torch.rand(5)
    mixed, soft = mix_pairs(x, torch.eye(5), lam, torch.tensor([1, 2, 3, 4, 0]))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(mixed[0], lam[0] * x[0] + (1 - lam[0]) * x[1])
    assert soft[0, 0] == pytest.approx(lam[0].item())
    assert soft[0, 1] == pytest.approx(1 - lam[0].item())

    same, hard = mix_pairs(x, torch.eye(5), torch.ones(5), torch.tensor([1, 2, 3, 4, 0]))
    torch.testing.assert_close(same, x)
    scale = torch.tensor(10.0)
    torch.testing.assert_close(info_nce(same, image, scale, hard), info_nce(x, image, scale))
