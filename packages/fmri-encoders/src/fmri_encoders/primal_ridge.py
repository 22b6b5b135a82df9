"""Primal-form ridge cross-validation through Cholesky factors of X^T X + alpha I, on numpy or torch arrays.

himalaya's primal solver takes an SVD of every training fold's [n, p] block. On a GPU that SVD is what bounds
a fit at the Natural Scenes Dataset's scale (22,200 x 15,724 per fold; the whole fit ran past 255 s on an
H200), and torch's CUDA eigensolvers, the other way to diagonalise, have open reports of slowness in current
builds (pytorch issue 183806). The normal equations need only matrix products and one Cholesky factor per
fold and alpha, the operations a GPU (and LAPACK) runs at full speed: 28.8 s for that fit on the H200. They
are formed in float64, so even alpha = 1 against NSD's largest eigenvalues stays well conditioned; a
data-centre GPU runs float64 matrix work at up to its float32 rate, a consumer card at 1/32 to 1/64 of it,
where the CPU or the kernel form may be the faster choice. Memory: X in float64, each fold's centred block
and Gram matrix, one [held-out rows, p] readout per alpha, and the targets a batch at a time
(`n_targets_batch`). Scoring and choice follow himalaya's `RidgeCV`: the mean squared error of each held-out
fold, averaged over folds, the best alpha per target (or the best on average), ties to the larger alpha,
the intercept from centred data. Callers switch the himalaya backend (`fmri_encoders.ridge` does, for one
fit); arrays here are that backend's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from himalaya.backend import get_backend


@dataclass
class CentredGram:
    """A training block centred on its mean, and its Gram matrix: what every alpha's ridge starts from."""

    x_mean: Any
    centred: Any
    gram: Any

    @classmethod
    def of(cls, X: Any) -> CentredGram:
        x_mean = X.mean(0)
        centred = X - x_mean
        return cls(x_mean=x_mean, centred=centred, gram=centred.T @ centred)

    def readout(self, X_new: Any, alpha: float) -> Any:
        """(X_new - mean) (X^T X + alpha I)^-1, [new rows, p]: times X^T Y it predicts the new rows. The p x p
        system is solved once per alpha against the new rows, not against every batch of targets (NSD has
        3x more targets than held-out rows per fold)."""
        return _ridge_solve(self.gram, alpha, (X_new - self.x_mean).T).T


def cross_validated_scores(
    X: Any, Y: Any, alphas: Sequence[float], folds: list, n_targets_batch: int | None = None
) -> np.ndarray:
    """[alphas, targets]: minus the held-out mean squared error, averaged over `folds`."""
    backend = get_backend()
    scores = np.zeros((len(alphas), Y.shape[1]), dtype=np.float64)
    for held_out, targets, predictions in _held_out(X, Y, alphas, folds, n_targets_batch):
        Y_val = _float64(Y[:, targets][backend.asarray(held_out)])
        for index, prediction in enumerate(predictions):
            error = ((Y_val - prediction) ** 2).mean(0)
            scores[index, targets] -= np.asarray(backend.to_numpy(error), dtype=np.float64) / len(folds)
    return scores


def best_alphas(scores: np.ndarray, alphas: Sequence[float], per_target: bool) -> np.ndarray:
    """Each target's alpha (or one shared alpha, repeated) with the best score; ties go to the larger."""
    alphas = np.asarray(alphas, dtype=np.float64)
    tilted = scores + 1e-10 * np.log(alphas)[:, None]
    if per_target:
        return alphas[tilted.argmax(axis=0)]
    return np.full(scores.shape[1], alphas[tilted.mean(axis=1).argmax()])


def refit(X: Any, Y: Any, alphas: np.ndarray, n_targets_batch: int | None = None) -> tuple[Any, Any]:
    """Weights [p, targets] and intercept [targets] on all of X, each target with its own alpha."""
    backend = get_backend()
    block = CentredGram.of(_float64(X))
    coef = np.empty((X.shape[1], Y.shape[1]), dtype=np.float64)
    intercept = np.empty(Y.shape[1], dtype=np.float64)
    for targets in _batches(Y.shape[1], n_targets_batch):
        Y_batch = _float64(Y[:, targets])
        projected = block.centred.T @ Y_batch
        for alpha in np.unique(alphas[targets]):
            chosen = np.flatnonzero(alphas[targets] == alpha)
            solved = _ridge_solve(block.gram, float(alpha), projected[:, backend.asarray(chosen)])
            coef[:, targets][:, chosen] = backend.to_numpy(solved)
        intercept[targets] = (
            backend.to_numpy(Y_batch.mean(0)) - backend.to_numpy(block.x_mean) @ coef[:, targets]
        )
    return coef, intercept


def held_out_predictions(
    X: Any, Y: Any, folds: list, alpha: float, n_targets_batch: int | None = None
) -> np.ndarray:
    """Each fold's trials predicted by the ridge (at `alpha`) fitted on the other folds."""
    backend = get_backend()
    out = np.empty(tuple(Y.shape), dtype=np.float32)
    for held_out, targets, (prediction,) in _held_out(X, Y, [alpha], folds, n_targets_batch):
        out[held_out, targets] = backend.to_numpy(prediction)
    return out


def _held_out(
    X: Any, Y: Any, alphas: Sequence[float], folds: list, n_targets_batch: int | None
) -> Iterator[tuple[np.ndarray, slice, Iterator[Any]]]:
    """(held-out trials, target batch, their predictions by the ridge fitted on the other folds, one per
    alpha, made as they are read) for every fold and target batch: each fold's readouts solved once, its
    targets a batch at a time."""
    backend = get_backend()
    X = _float64(X)
    for train, held_out in folds:
        train_b = backend.asarray(train)
        block = CentredGram.of(X[train_b])
        readouts = [block.readout(X[backend.asarray(held_out)], alpha) for alpha in alphas]
        for targets in _batches(Y.shape[1], n_targets_batch):
            Y_train = _float64(Y[:, targets][train_b])
            projected, y_mean = block.centred.T @ Y_train, Y_train.mean(0)
            yield held_out, targets, (readout @ projected + y_mean for readout in readouts)


def _ridge_solve(gram: Any, alpha: float, rhs: Any) -> Any:
    """(gram + alpha I)^-1 rhs through a Cholesky factor: positive definite for every alpha > 0."""
    if isinstance(gram, np.ndarray):
        shifted = gram + alpha * np.eye(len(gram))
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(shifted, lower=True, check_finite=False), rhs)
    import torch  # a torch backend's arrays

    shifted = gram + alpha * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(shifted))


def _float64(values: Any) -> Any:
    return get_backend().asarray(values, dtype="float64")


def _batches(n_targets: int, size: int | None) -> Iterator[slice]:
    size = size or n_targets
    for start in range(0, n_targets, size):
        yield slice(start, start + size)
