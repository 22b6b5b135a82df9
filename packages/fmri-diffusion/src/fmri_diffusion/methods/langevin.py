"""Likelihood guidance for a one-pass sampler by its latent's gradient: Metropolis-adjusted Langevin chains.

The cvae decodes an image from a latent z ~ N(0, I) in one pass. Weighing its samples by the encoding
model's likelihood (methods.reweighting) only reaches the tempered posterior N(z; 0, I) x likelihood^weight
as far as the drawn samples cover it: with tens of latent dimensions and 64 draws, the weights fall onto a
few samples as the weight grows, so validation keeps it small. Following the likelihood's gradient in z
instead moves every sample towards images whose predicted fMRI matches the measured pattern, as the
diffusion routes' guided steps do. The Metropolis correction keeps each chain's target exact whatever the
step size; the step size and the number of steps set how near the target a chain gets from its prior draw
(numerical settings, checked on the chains' likelihood, not tuned on the metrics).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LogDensity = Callable[[torch.Tensor], torch.Tensor]
"""Latents [B, D] -> unnormalised log density [B], differentiable in the latents."""


def tempered_latent_posterior(
    decode: Callable[[torch.Tensor], torch.Tensor],
    likelihood: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    measured: torch.Tensor,
    weight: float,
) -> LogDensity:
    """log N(z; 0, I) - weight x the negative log-likelihood of `measured` [B, V] given decode(z)
    [B, H, W]."""
    return lambda z: -0.5 * z.pow(2).sum(dim=1) - weight * likelihood(decode(z), measured)


def mala(
    log_density: LogDensity,
    start: torch.Tensor,
    steps: int,
    step_size: float,
    generators: list[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one Metropolis-adjusted Langevin chain per row of `start` [B, D] for `steps` steps; each chain
    draws its noise and its acceptance from its own generator, so batching does not change the numbers a
    chain draws (only, at worst, the rounding of its gradients).

    Returns the final latents [B, D] and each chain's acceptance rate [B].
    """
    if step_size <= 0:
        raise ValueError(f"the Langevin step size must be above 0, got {step_size}")
    z = start.detach()
    log_p, grad = _value_and_grad(log_density, z)
    accepted = torch.zeros(len(z), device=z.device)
    for _ in range(steps):
        noise = _per_chain(torch.randn, generators, z.shape[1]).to(z)
        proposal = z + 0.5 * step_size * grad + step_size**0.5 * noise
        log_p_new, grad_new = _value_and_grad(log_density, proposal)
        forward = _transition_log_density(proposal, z, grad, step_size)
        backward = _transition_log_density(z, proposal, grad_new, step_size)
        log_ratio = log_p_new + backward - log_p - forward
        uniform = _per_chain(torch.rand, generators, 1)[:, 0].to(z)
        keep = torch.log(uniform) < log_ratio
        z = torch.where(keep[:, None], proposal, z)
        log_p = torch.where(keep, log_p_new, log_p)
        grad = torch.where(keep[:, None], grad_new, grad)
        accepted += keep.float()
    return z, accepted / max(steps, 1)


def _value_and_grad(log_density: LogDensity, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The log density [B] and its gradient in z [B, D], detached; with gradients on, as samplers run
    under torch.no_grad()."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        value = log_density(z)
        (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad.detach()


def _transition_log_density(
    to: torch.Tensor, start: torch.Tensor, grad: torch.Tensor, step_size: float
) -> torch.Tensor:
    """log q(to | start) of the Langevin proposal N(start + step_size / 2 x grad, step_size x I), up to a
    constant shared by both directions."""
    return -(to - start - 0.5 * step_size * grad).pow(2).sum(dim=1) / (2 * step_size)


def _per_chain(
    draw: Callable[..., torch.Tensor], generators: list[torch.Generator], size: int
) -> torch.Tensor:
    """`size` numbers per chain [B, size], each row from its chain's own generator (on the CPU)."""
    return torch.stack([draw(size, generator=generator) for generator in generators])
