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

    `targets` may be any [n, ...] array (pixels, latents, embeddings); predictions keep its shape.
    """
    flat = targets.reshape(len(targets), -1)
    k = min(k, np.unique(groups).size)
    predictions = np.empty_like(flat, dtype=np.float32)
    for train, held_out in group_kfold(groups, k, seed=seed):
        inner_k = min(5, np.unique(groups[train]).size)
        model = RidgeEncoder(cv=inner_k, backend=backend, **ridge_options)
        model.fit(fmri[train], flat[train], groups=groups[train])
        predictions[held_out] = model.predict(fmri[held_out])
    full = RidgeEncoder(cv=min(5, np.unique(groups).size), backend=backend, **ridge_options)
    full.fit(fmri, flat, groups=groups)
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
