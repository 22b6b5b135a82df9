"""Pearson correlation via standardized rows, shared so pcc and identification agree exactly."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def standardize_rows(features: NDArray[np.float64]) -> NDArray[np.float64]:
    """Centre each row of [n, d] and scale it to unit norm; constant rows become zeros (correlation 0)."""
    centered = features - features.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    return np.divide(centered, norms, out=np.zeros_like(centered), where=norms > 0)


def unit_rows(features: NDArray[np.float64]) -> NDArray[np.float64]:
    """Scale each row of [n, d] to unit norm (for cosine similarity); zero rows stay zero."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
