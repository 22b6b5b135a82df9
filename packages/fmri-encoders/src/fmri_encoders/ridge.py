"""Ridge regression from voxels to any target space, with the regularisation chosen by cross-validation.

Built on himalaya (Gallant lab), the field's ridge library: its kernel form scores every alpha on every
target in one pass over an eigendecomposition of X X^T, picks the best alpha per target (or one shared alpha),
batches over targets for memory, and runs the same code on numpy or torch/CUDA through its backends. This
module adds what a decoding pipeline needs around it: the choice of primal or kernel form (the primal form
through Cholesky factors of X^T X + alpha I, `fmri_encoders.primal_ridge`, where himalaya's SVD of every fold
bounds a GPU at NSD's scale), stimulus-grouped inner folds, optional rescaling to the training targets'
statistics, and pickle-free save/load.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from himalaya.backend import get_backend, set_backend
from himalaya.kernel_ridge import KernelRidge, KernelRidgeCV

from fmri_data.errors import DataError
from fmri_data.splits import group_kfold
from fmri_encoders import primal_ridge
from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(0, 6, 13))
_RESOLUTION_BYTES = 2**30
_SAVED_AS = "ridge"


class RidgeEncoder:
    """Cross-validated ridge, scikit-learn style: `fit(X, Y)`, `predict(X)`, `score(X, Y)`.

    alphas: grid searched by `cv`-fold cross-validation inside the training data.
    per_target: choose the alpha for each target column (True) or one alpha shared by all (False).
    solver: "primal" (X^T X, when samples outnumber features), "kernel" (X X^T, when voxels outnumber
        trials) or "auto" (whichever matrix is smaller).
    rescale: map predictions to the training targets' per-target mean and std, standardised by the mean
        and std of out-of-fold predictions of the training trials: it undoes ridge's shrinkage towards the
        mean (Brain-Diffuser does this with the test predictions' own statistics; out-of-fold ones keep
        each prediction independent of the test set and of its batch).
    backend: a himalaya backend name: "numpy", "torch" or "torch_cuda".
    n_targets_batch: targets solved at once, to bound memory with tens of thousands of targets.
    """

    def __init__(
        self,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        *,
        cv: int = 5,
        per_target: bool = True,
        solver: Literal["auto", "primal", "kernel"] = "auto",
        rescale: bool = False,
        backend: str = "numpy",
        n_targets_batch: int | None = None,
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.per_target = per_target
        self.solver = solver
        self.rescale = rescale
        self.backend = backend
        self.n_targets_batch = n_targets_batch

    # ---------------------------------------------------------------- fitting
    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None) -> RidgeEncoder:
        """Fit [n, features] -> [n, targets]; `groups` (e.g. stimulus ids) keep repeats in one inner fold."""
        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        if len(X) != len(Y):
            raise DataError(f"X has {len(X)} samples but Y has {len(Y)}")
        if self.cv < 2:
            raise DataError(f"cv must be at least 2 folds, got {self.cv}")
        self.solver_ = self._resolve_solver(*X.shape)
        folds = _grouped_folds(len(X), self.cv, groups)
        with _himalaya_backend(self.backend):
            fit = self._fit_kernel if self.solver_ == "kernel" else self._fit_primal
            coef, intercept, best_alphas = fit(X, Y, folds)
        self.coef_ = np.asarray(coef, dtype=np.float32).reshape(X.shape[1], Y.shape[1])
        self.intercept_ = np.asarray(intercept, np.float32).reshape(Y.shape[1])
        self.best_alphas_ = np.asarray(best_alphas, np.float32).reshape(-1)
        self.target_mean_ = Y.mean(axis=0).astype(np.float32)
        self.target_std_ = Y.std(axis=0).astype(np.float32)
        fitted = self._out_of_fold_predictions(X, Y, folds) if self.rescale else self._linear_predict(X)
        self.fitted_mean_ = fitted.mean(axis=0)
        self.fitted_std_ = fitted.std(axis=0)
        return self

    def _fit_kernel(
        self, X: np.ndarray, Y: np.ndarray, folds: list
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """himalaya's KernelRidgeCV on the linear kernel X X^T; primal weights X^T dual."""
        backend = get_backend()
        X, Y = backend.asarray(X), backend.asarray(Y)
        solver_params: dict[str, Any] = {
            "local_alpha": self.per_target,
            "n_alphas_batch": _alphas_per_batch(len(X) - len(X) // self.cv),
        }
        if self.n_targets_batch:
            solver_params |= {
                "n_targets_batch": self.n_targets_batch,
                "n_targets_batch_refit": self.n_targets_batch,
            }
        model = KernelRidgeCV(
            alphas=np.asarray(self.alphas),
            kernel="linear",
            cv=folds,
            fit_intercept=True,
            solver_params=solver_params,
            warn=False,
        )
        model.fit(X, Y)
        coef = backend.to_numpy(X.T @ backend.asarray(model.dual_coef_))
        return coef, backend.to_numpy(model.intercept_), backend.to_numpy(model.best_alphas_)

    def _fit_primal(
        self, X: np.ndarray, Y: np.ndarray, folds: list
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cross-validation and refit through Cholesky factors of X^T X + alpha I (`primal_ridge`); X goes
        to the backend in float64 directly, the targets a batch at a time."""
        Y = get_backend().asarray(Y)
        scores = primal_ridge.cross_validated_scores(X, Y, self.alphas, folds, self.n_targets_batch)
        alphas = primal_ridge.best_alphas(scores, self.alphas, self.per_target)
        coef, intercept = primal_ridge.refit(X, Y, alphas, self.n_targets_batch)
        return coef, intercept, alphas

    def _out_of_fold_predictions(self, X: np.ndarray, Y: np.ndarray, folds: list) -> np.ndarray:
        """Each trial predicted by a ridge (the chosen alpha) fitted on the other folds: the spread that
        predictions of unseen trials have, which `rescale` maps back to the targets' (in-sample predictions
        are barely shrunk where voxels outnumber trials)."""
        alpha = float(np.median(self.best_alphas_))
        with _himalaya_backend(self.backend) as backend:
            if self.solver_ == "primal":
                return primal_ridge.held_out_predictions(
                    X, backend.asarray(Y), folds, alpha, self.n_targets_batch
                )
            batch = {"n_targets_batch": self.n_targets_batch} if self.n_targets_batch else {}
            out = np.empty(Y.shape, np.float32)
            for train, held_out in folds:
                model = KernelRidge(alpha=alpha, fit_intercept=True, solver_params=batch, warn=False)
                model.fit(backend.asarray(X[train]), backend.asarray(Y[train]))
                out[held_out] = backend.to_numpy(model.predict(backend.asarray(X[held_out])))
        return out

    def _resolve_solver(self, n_samples: int, n_features: int) -> str:
        if self.solver == "auto":
            return "kernel" if n_features > n_samples else "primal"
        if self.solver not in ("primal", "kernel"):
            raise DataError(f"unknown solver {self.solver!r}; use auto, primal or kernel")
        return self.solver

    # ------------------------------------------------------------- predicting
    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = _as_2d(X, "X")
        if X.shape[1] != self.coef_.shape[0]:
            raise DataError(f"X has {X.shape[1]} features but the model was fitted on {self.coef_.shape[0]}")
        prediction = self._linear_predict(X)
        if self.rescale:
            # z-score by the fitted training predictions, then restore the training targets' scale.
            safe_std = np.where(self.fitted_std_ > 0, self.fitted_std_, 1.0)
            prediction = (prediction - self.fitted_mean_) / safe_std * self.target_std_ + self.target_mean_
        return prediction.astype(np.float32)

    def _linear_predict(self, X: np.ndarray) -> np.ndarray:
        """X @ coef + intercept on the estimator's backend (the GPU for torch_cuda)."""
        with _himalaya_backend(self.backend) as backend:
            product = backend.asarray(X) @ backend.asarray(self.coef_) + backend.asarray(self.intercept_)
            return np.asarray(backend.to_numpy(product), dtype=np.float32)

    def score(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Mean coefficient of determination over targets (scikit-learn's convention)."""
        Y = _as_2d(Y, "Y")
        residual = ((Y - self.predict(X)) ** 2).sum(axis=0)
        total = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        return float(np.mean(1.0 - residual / np.where(total > 0, total, 1.0)))

    # -------------------------------------------------------------------- io
    def save(self, directory: str | Path) -> Path:
        """Write `ridge.json` (settings) and `ridge.safetensors` (fitted arrays) into `directory`."""
        self._check_fitted()
        settings = {
            "alphas": list(self.alphas),
            "cv": self.cv,
            "per_target": self.per_target,
            "solver": self.solver,
            "rescale": self.rescale,
            "backend": self.backend,
            "n_targets_batch": self.n_targets_batch,
            "solver_": self.solver_,
        }
        arrays = {name: getattr(self, name) for name in _FITTED}
        save_settings_and_tensors(directory, _SAVED_AS, settings, arrays)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path, *, backend: str | None = None) -> RidgeEncoder:
        """Read a saved model; `backend` overrides the saved one. A model fitted on a GPU (torch_cuda) loads
        on numpy where torch sees none, so a fit from a GPU machine predicts anywhere."""
        settings, arrays = load_settings_and_tensors(directory, _SAVED_AS)
        solver_ = settings.pop("solver_")
        if backend is None and settings["backend"] == "torch_cuda" and not _cuda_available():
            backend = "numpy"
        if backend is not None:
            settings["backend"] = backend
        model = cls(**settings)
        model.solver_ = solver_
        for name, value in arrays.items():
            setattr(model, name, value.numpy())
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this RidgeEncoder is not fitted yet; call fit(X, Y) first")


_FITTED = (
    "coef_",
    "intercept_",
    "best_alphas_",
    "target_mean_",
    "target_std_",
    "fitted_mean_",
    "fitted_std_",
)


def _alphas_per_batch(n_train: int) -> int:
    """How many alphas himalaya's kernel solver resolves at once. Its resolution matrices are [alphas,
    n_train, n_train], 42 GB for 13 alphas at 20,000 training trials; batches of at most _RESOLUTION_BYTES
    bound the fit's memory, and small problems still take every alpha at once."""
    per_alpha = 2 * 4 * n_train * n_train  # the weighted factor and the product, float32
    return max(1, _RESOLUTION_BYTES // per_alpha)


def _as_2d(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise DataError(f"{name} must be 2-D [n_samples, n], got shape {values.shape}")
    if not np.isfinite(values).all():
        raise DataError(f"{name} contains NaN or inf")
    return values


def _grouped_folds(n: int, k: int, groups: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner CV folds over groups (stimuli), so repeats of a stimulus never straddle folds."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    n_groups = np.unique(groups).size
    if n_groups < k:
        raise DataError(f"ridge CV needs at least {k} distinct groups (stimuli), got {n_groups}")
    return group_kfold(groups, k, seed=0)


def _cuda_available() -> bool:
    import torch  # only asked when a GPU-fitted model is loaded

    return torch.cuda.is_available()


@contextmanager
def _himalaya_backend(name: str) -> Iterator[Any]:
    """Switch himalaya's global backend for one fit, and put the caller's back afterwards."""
    previous = get_backend()
    try:
        yield set_backend(name, on_error="raise")
    finally:
        set_backend(previous, on_error="raise")
