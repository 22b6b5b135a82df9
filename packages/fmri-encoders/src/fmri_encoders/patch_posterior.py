"""The posterior over K x K binary patches given a trial's voxels, sampled by Gibbs sampling.

Likelihood: the voxels are Gaussian around a pRF model's prediction with per-voxel noise (or a noise
covariance that correlates them), raised to a power `likelihood_weight` (below 1 it discounts what the
noise model overstates: independent noise ignores neighbouring voxels' correlations, and a fit on ~100
trials is itself noisy). Prior: an Ising model, each patch on with log-odds
`field`, neighbouring patches agreeing with strength `coupling` (figures are solid shapes, not salt and
pepper). Optional per-patch evidence (log-likelihood ratios from another model of the same patches, e.g. a
linear decoder read out by fmri_data.readout.PatchReadout) multiplies in. All trials are sampled at once,
one patch at a time; the posterior mean averages each patch's conditional probability over the sweeps after
burn-in (Rao-Blackwellised), which is smoother than counting the states visited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from fmri_data.readout import FILL_LIMIT
from fmri_encoders.prf import ReceptiveFields


@dataclass(frozen=True)
class IsingPrior:
    """field: log-odds of a patch being on before its neighbours count; coupling: J in the log-prior's
    J * s_i * s_j over pairs of 4-neighbours (spins s = 2p - 1), so an agreeing pair scores 2J above a
    disagreeing one."""

    field: float
    coupling: float

    @classmethod
    def from_fill(cls, fill: float, coupling: float) -> Self:
        """The field that makes `fill` the on-probability of a patch without neighbours."""
        fill = float(np.clip(fill, FILL_LIMIT, 1 - FILL_LIMIT))
        return cls(float(np.log(fill / (1 - fill))), coupling)


def grid_neighbours(grid: int) -> list[np.ndarray]:
    """For each patch (row-major), the indices of its 4-neighbours on the grid."""
    neighbours = []
    for index in range(grid * grid):
        row, col = divmod(index, grid)
        steps = ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1))
        neighbours.append(np.array([r * grid + c for r, c in steps if 0 <= r < grid and 0 <= c < grid]))
    return neighbours


def sample_patches(
    fmri: np.ndarray,
    fields: ReceptiveFields,
    prior: IsingPrior,
    *,
    likelihood_weight: float = 1.0,
    evidence: np.ndarray | None = None,
    noise_precision: np.ndarray | None = None,
    sweeps: int = 200,
    burn_in: int = 50,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """fmri [m, voxels] (the voxels `fields` models) -> (posterior mean on-probabilities [m, grid, grid],
    the chain's last state [m, grid, grid], one posterior sample). evidence: [m, grid, grid] log-likelihood
    ratios added to each patch's log-odds. noise_precision: [voxels, voxels], the (symmetric) inverse of a
    noise covariance that correlates voxels, in place of the independent noise `fields` holds."""
    if not 0 <= burn_in < sweeps:
        raise ValueError(f"burn_in must lie in [0, sweeps), got {burn_in} of {sweeps}")
    fmri = np.asarray(fmri, dtype=np.float64)
    grid, patches = fields.grid, fields.grid**2
    weights = fields.weights
    if noise_precision is None:
        scaled = weights * (likelihood_weight / fields.noise)[:, None]
    else:
        scaled = likelihood_weight * np.asarray(noise_precision) @ weights
    coupling_matrix = scaled.T @ weights  # [patches, patches]
    drive = (fmri - fields.offsets) @ scaled  # [m, patches]
    if evidence is not None:
        drive = drive + np.asarray(evidence).reshape(len(fmri), patches)
    drive = drive - np.diag(coupling_matrix) / 2 + prior.field
    neighbours = grid_neighbours(grid)
    rng = np.random.default_rng(seed)
    state = (rng.random((len(fmri), patches)) < 0.5).astype(np.float64)
    total = np.zeros_like(state)
    for sweep in range(sweeps):
        for index in range(patches):
            others = state @ coupling_matrix[:, index] - state[:, index] * coupling_matrix[index, index]
            agreement = (2 * state[:, neighbours[index]] - 1).sum(axis=1)
            log_odds = drive[:, index] - others + 2 * prior.coupling * agreement
            probability = 1 / (1 + np.exp(-np.clip(log_odds, -60, 60)))
            if sweep >= burn_in:
                total[:, index] += probability
            state[:, index] = rng.random(len(fmri)) < probability
    mean = total / (sweeps - burn_in)
    return mean.reshape(-1, grid, grid), state.reshape(-1, grid, grid)
