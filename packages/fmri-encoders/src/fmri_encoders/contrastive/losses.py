"""Contrastive objectives: symmetric InfoNCE with a learned temperature, and MixCo mixing of fMRI pairs."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.functional import normalize


class LogitScale(nn.Module):
    """CLIP's learnable inverse temperature: stored as a log so it stays positive, capped at `max_scale`.

    The cap (100 in CLIP) stops the scale from growing until the softmax saturates and training stalls.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_scale = max_scale

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)


def group_targets(groups: torch.Tensor) -> torch.Tensor:
    """[B, B] soft targets spreading each row over the trials of the same stimulus.

    Repeats of one stimulus share an image, so they must not count as each other's negatives.
    """
    same = (groups[:, None] == groups[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def info_nce(
    brain: torch.Tensor,
    image: torch.Tensor,
    scale: torch.Tensor,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over cosine similarities: mean of brain→image and image→brain cross-entropies.

    targets: [B, B] rows summing to 1 (brain i's distribution over images); identity when None. The
    image→brain direction uses its transpose, renormalised, so both directions compare distributions.
    """
    brain = normalize(brain.float(), dim=-1)
    image = normalize(image.float(), dim=-1)
    logits = scale * brain @ image.T
    if targets is None:
        targets = torch.eye(len(brain), device=logits.device)
    reverse = targets.T / targets.T.sum(dim=1, keepdim=True).clamp_min(1e-12)
    brain_to_image = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    image_to_brain = -(reverse * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (brain_to_image + image_to_brain) / 2


def mix_pairs(
    x: torch.Tensor, targets: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each sample with the one `perm` pairs it to, and its target row in the same proportion (MixCo).

    lam: [B] weight of each sample's own data; lam = 1 leaves a sample and its targets unchanged.
    """
    weight = lam.to(x.dtype)[:, None]
    mixed = weight * x + (1 - weight) * x[perm]
    weight = lam.to(targets.dtype)[:, None]
    return mixed, weight * targets + (1 - weight) * targets[perm]


def mixco(
    x: torch.Tensor, targets: torch.Tensor, alpha: float = 0.15, prob: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixCo on a batch: a `prob` share of samples mixed with a random partner, lam ~ Beta(alpha, alpha).

    With ~100 trials a contrastive encoder memorises its pairs within a few epochs; mixed inputs with soft
    targets keep it learning a smooth map instead (Kim et al. 2020, used for fMRI by MindEye).
    """
    n = len(x)
    lam = torch.distributions.Beta(alpha, alpha).sample((n,)).to(x.device)
    keep = torch.rand(n, device=x.device) >= prob
    lam = torch.where(keep, torch.ones_like(lam), lam)
    perm = torch.randperm(n, device=x.device)
    return mix_pairs(x, targets, lam, perm)
