"""Primal-form ridge cross-validation through Cholesky factors of X^T X + alpha I, on numpy or torch arrays.

himalaya's primal solver takes an SVD of every training fold's [n, p] block. On a GPU that SVD is what bounds
a fit at the Natural Scenes Dataset's scale (22,200 x 15,724 per fold; the whole fit ran past 255 s on an
H200, and torch's CUDA eigensolvers are no way out: they are slow for large single matrices in the torch
builds of 2026). The normal equations need only matrix products and one Cholesky factor per fold and alpha,
the operations a GPU (and LAPACK) runs at full speed; they are formed in float64, so even alpha = 1 against
NSD's largest eigenvalues stays well conditioned. Scoring and choice follow himalaya's `RidgeCV`: the mean
squared error of each held-out fold, averaged over folds, the best alpha per target (or the best on
average), ties to the larger alpha, the intercept from centred data. Callers switch the himalaya backend
(`fmri_encoders.ridge` does, for one fit); arrays here are that backend's.
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

    def weights(self, alpha: float, Y: Any) -> Any:
        """(X^T X + alpha I)^-1 X^T Y for centred X; Y need not be centred (X's columns sum to 0)."""
        return _ridge_solve(self.gram, alpha, self.centred.T @ Y)


def cross_validated_scores(
    X: Any, Y: Any, alphas: Sequence[float], folds: list, n_targets_batch: int | None = None
) -> np.ndarray:
    """[alphas, targets]: minus the held-out mean squared error, averaged over `folds`."""
    backend = get_backend()
    X, Y = _float64(X), _float64(Y)
    scores = np.zeros((len(alphas), Y.shape[1]), dtype=np.float64)
    for train, held_out in folds:
        train, held_out = backend.asarray(train), backend.asarray(held_out)
        block = CentredGram.of(X[train])
        X_val = X[held_out] - block.x_mean
        for targets in _batches(Y.shape[1], n_targets_batch):
            Y_train, Y_val = Y[:, targets][train], Y[:, targets][held_out]
            projected = block.centred.T @ Y_train
            y_mean = Y_train.mean(0)
            for index, alpha in enumerate(alphas):
                prediction = X_val @ _ridge_solve(block.gram, alpha, projected) + y_mean
                error = backend.to_numpy(((Y_val - prediction) ** 2).mean(0))
                scores[index, targets] -= np.asarray(error, dtype=np.float64) / len(folds)
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
    X, Y = _float64(X), _float64(Y)
    block = CentredGram.of(X)
    coef = np.empty((X.shape[1], Y.shape[1]), dtype=np.float64)
    for targets in _batches(Y.shape[1], n_targets_batch):
        projected = block.centred.T @ Y[:, targets]
        for alpha in np.unique(alphas[targets]):
            chosen = np.flatnonzero(alphas[targets] == alpha)
            solved = _ridge_solve(block.gram, float(alpha), projected[:, backend.asarray(chosen)])
            coef[:, targets][:, chosen] = backend.to_numpy(solved)
    intercept = backend.to_numpy(Y.mean(0)) - backend.to_numpy(block.x_mean) @ coef
    return coef, intercept


def held_out_predictions(X: Any, Y: Any, folds: list, alpha: float) -> np.ndarray:
    """Each fold's trials predicted by the ridge (at `alpha`) fitted on the other folds."""
    backend = get_backend()
    X, Y = _float64(X), _float64(Y)
    out = np.empty(tuple(Y.shape), dtype=np.float32)
    for train, held_out in folds:
        train_b = backend.asarray(train)
        block = CentredGram.of(X[train_b])
        prediction = (X[backend.asarray(held_out)] - block.x_mean) @ block.weights(alpha, Y[train_b])
        out[held_out] = backend.to_numpy(prediction + Y[train_b].mean(0))
    return out


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
