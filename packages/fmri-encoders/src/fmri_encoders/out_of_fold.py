"""First-stage predictions for training trials that no model saw: what a second stage must learn from.

In-sample ridge reconstructions of training trials are near perfect, so a refiner or diffusion model trained
on them learns to trust an input that is far noisier at test time. Predicting each training trial with a
ridge fitted without its stimulus gives inputs with test-time noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmri_data.splits import group_kfold
from fmri_encoders.contrastive.encoder import ContrastiveEncoder
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import shared_out


def out_of_fold_ridge(
    fmri: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    *,
    k: int = 5,
    seed: int = 0,
    backend: str = "numpy",
    **ridge_options: object,
) -> tuple[np.ndarray, RidgeEncoder]:
    """Out-of-fold predictions [n, targets] (stimulus-grouped folds) and a ridge refitted on all trials.

    `targets` may be any [n, ...] array (pixels, latents, embeddings); predictions keep its shape. Under
    `accelerate launch` the k + 1 fits are shared out among the processes and gathered on each.
    """
    flat = targets.reshape(len(targets), -1)
    folds: list[tuple[np.ndarray, np.ndarray] | None] = list(
        group_kfold(groups, min(k, np.unique(groups).size), seed=seed)
    )

    def fit(fold: tuple[np.ndarray, np.ndarray] | None) -> RidgeEncoder | np.ndarray:
        """A fold's predictions of its held-out trials, or (None) the ridge of all trials."""
        train = np.arange(len(fmri)) if fold is None else fold[0]
        model = RidgeEncoder(cv=min(5, np.unique(groups[train]).size), backend=backend, **ridge_options)
        model.fit(fmri[train], flat[train], groups=groups[train])
        return model if fold is None else model.predict(fmri[fold[1]])

    *held_out, full = shared_out([*folds, None], fit)
    predictions = np.empty_like(flat, dtype=np.float32)
    for fold, predicted in zip(folds, held_out, strict=True):
        predictions[fold[1]] = predicted
    return predictions.reshape(targets.shape), full


def out_of_fold_embeddings(
    fmri: np.ndarray,
    images: np.ndarray,
    groups: np.ndarray,
    *,
    k: int = 5,
    seed: int = 0,
    **encoder_options: Any,
) -> tuple[np.ndarray, ContrastiveEncoder]:
    """Contrastive fMRI embeddings [n, d] of training trials, each from an encoder trained without its
    stimulus (stimulus-grouped folds), and an encoder trained on all trials for test time: what a
    conditioner fed by contrastive embeddings must learn from, for the same reason as out_of_fold_ridge."""
    groups = np.asarray(groups)
    k = min(k, np.unique(groups).size)
    embeddings: np.ndarray | None = None
    for train, held_out in group_kfold(groups, k, seed=seed):
        encoder = ContrastiveEncoder(**encoder_options).fit(fmri[train], images[train], groups=groups[train])
        fold = encoder.embed_fmri(fmri[held_out])
        if embeddings is None:
            embeddings = np.empty((len(fmri), fold.shape[1]), dtype=np.float32)
        embeddings[held_out] = fold
    full = ContrastiveEncoder(**encoder_options).fit(fmri, images, groups=groups)
    return embeddings, full
