"""Identification and retrieval: can each reconstruction pick out its own image among others?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fmri_eval.correlation import standardize_rows, unit_rows
from fmri_eval.errors import EvaluationError
from fmri_eval.validation import check_feature_pair, check_stimulus_id


class IdentificationResult(NamedTuple):
    """Mean score plus the per-reconstruction scores it averages (bootstrap over the latter)."""

    score: float
    per_item: NDArray[np.float64]


def correlation_matrix(truth_features: ArrayLike, recon_features: ArrayLike) -> NDArray[np.float64]:
    """Pearson r of every truth with every reconstruction: entry [i, j] = r(truth_i, recon_j)."""
    truth_arr, recon_arr = check_feature_pair(truth_features, recon_features)
    return standardize_rows(truth_arr) @ standardize_rows(recon_arr).T


def _distractor_mask(n: int, stimulus_id: ArrayLike | None) -> NDArray[np.bool_]:
    """mask[i, j] is True when truth i may compete with reconstruction j: another trial, another stimulus.

    Trials of the same stimulus show the same image, so their correlations tie by construction and
    would count against the reconstruction for no fault of its own.
    """
    ids = check_stimulus_id(stimulus_id, n)
    if ids is None:
        return ~np.eye(n, dtype=bool)
    return ids[:, None] != ids[None, :]


def _mean_of_defined(per_item: NDArray[np.float64]) -> float:
    defined = per_item[~np.isnan(per_item)]
    if defined.size == 0:
        raise EvaluationError(
            "identification needs at least two different stimuli; evaluate on a test set with several images"
        )
    return float(defined.mean())


def twoway_identification(
    truth_features: ArrayLike, recon_features: ArrayLike, stimulus_id: ArrayLike | None = None
) -> IdentificationResult:
    """Two-way identification accuracy (NSD literature protocol), chance 0.5.

    For reconstruction j, the score is the fraction of competing truths i with
    r(truth_i, recon_j) < r(truth_j, recon_j) (strict: ties count as failures). Competitors are all
    other trials, or with `stimulus_id` only trials of a different stimulus. A j without competitors
    gets NaN and is left out of the mean. Works on pixels [n, H, W] or any features [n, ...].
    """
    corr = correlation_matrix(truth_features, recon_features)
    n = corr.shape[0]
    competitors = _distractor_mask(n, stimulus_id)
    correct = np.diag(corr)
    wins = np.sum(competitors & (corr < correct[None, :]), axis=0).astype(np.float64)
    counts = competitors.sum(axis=0).astype(np.float64)
    per_item = np.divide(wins, counts, out=np.full(n, np.nan), where=counts > 0)
    return IdentificationResult(_mean_of_defined(per_item), per_item)


def nway_identification(
    truth_features: ArrayLike,
    recon_features: ArrayLike,
    n_way: int,
    n_trials: int = 100,
    seed: int = 0,
    stimulus_id: ArrayLike | None = None,
) -> IdentificationResult:
    """N-way identification accuracy, chance 1/n_way.

    For each reconstruction j, `n_trials` times draw n_way-1 distinct distractor truths from other
    trials (of other stimuli when `stimulus_id` is given); a trial succeeds when the correct truth
    correlates strictly more with recon j than every distractor. per_item[j] is j's success rate.
    """
    if n_way < 2 or n_trials < 1:
        raise EvaluationError(f"need n_way >= 2 and n_trials >= 1, got {n_way} and {n_trials}; fix the call")
    corr = correlation_matrix(truth_features, recon_features)
    n = corr.shape[0]
    competitors = _distractor_mask(n, stimulus_id)
    rng = np.random.default_rng(seed)
    per_item = np.empty(n)
    for j in range(n):
        candidates = np.flatnonzero(competitors[:, j])
        if candidates.size < n_way - 1:
            raise EvaluationError(
                f"item {j} has only {candidates.size} distractors of other stimuli but {n_way}-way "
                f"identification needs {n_way - 1}; lower n_way"
            )
        # The n_way-1 smallest of i.i.d. uniform keys form a uniform random subset without replacement.
        keys = rng.random((n_trials, candidates.size))
        picks = np.argpartition(keys, n_way - 2, axis=1)[:, : n_way - 1]
        best_distractor = corr[candidates[picks], j].max(axis=1)
        per_item[j] = np.mean(best_distractor < corr[j, j])
    return IdentificationResult(float(per_item.mean()), per_item)


def _similarity(
    queries: NDArray[np.float64], candidates: NDArray[np.float64], metric: str
) -> NDArray[np.float64]:
    if metric == "correlation":
        return standardize_rows(queries) @ standardize_rows(candidates).T
    if metric == "cosine":
        return unit_rows(queries) @ unit_rows(candidates).T
    raise EvaluationError(f"unknown metric {metric!r}; use 'cosine' or 'correlation'")


def retrieval_topk(
    query_embeddings: ArrayLike,
    candidate_embeddings: ArrayLike,
    k: int | Sequence[int] = (1, 5),
    metric: Literal["cosine", "correlation"] = "cosine",
) -> dict[str, float]:
    """Top-k retrieval accuracy where query i's correct candidate is candidate i.

    Query i is a hit at k when fewer than k other candidates are at least as similar as candidate i
    (ties count against the query, as in identification). Returns {"top1": ..., "top5": ...}.
    """
    queries, candidates = check_feature_pair(query_embeddings, candidate_embeddings)
    n = queries.shape[0]
    ks = (k,) if isinstance(k, int) else tuple(k)
    if not ks or any(not 1 <= value <= n for value in ks):
        raise EvaluationError(f"k values {ks} must lie in [1, {n}] for {n} candidates; pass smaller k")
    similarity = _similarity(queries, candidates, metric)
    correct = np.diag(similarity)
    others_as_close = (similarity >= correct[:, None]) & ~np.eye(n, dtype=bool)
    rank = others_as_close.sum(axis=1)
    return {f"top{value}": float(np.mean(rank < value)) for value in ks}


def bidirectional_retrieval(
    brain_embeddings: ArrayLike,
    image_embeddings: ArrayLike,
    k: int | Sequence[int] = (1, 5),
    metric: Literal["cosine", "correlation"] = "cosine",
) -> dict[str, dict[str, float]]:
    """Top-k retrieval both ways: brain -> image (find the seen image) and image -> brain."""
    return {
        "brain_to_image": retrieval_topk(brain_embeddings, image_embeddings, k, metric),
        "image_to_brain": retrieval_topk(image_embeddings, brain_embeddings, k, metric),
    }


def stimulus_retrieval(
    similarity: ArrayLike,
    trial_stimulus: ArrayLike,
    candidate_stimulus: ArrayLike,
    k: int | Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Top-k retrieval between test trials and a set of candidate stimuli, from a similarity matrix.

    similarity[i, c] scores trial i against candidate stimulus c (e.g. cosine of brain and image
    embeddings). brain -> image: trial i is a hit at k when fewer than k wrong candidates score at least as
    high as its own stimulus. image -> brain: candidate c is a hit at k when one of the k best-scoring
    trials showed c (trials of the same stimulus are all correct answers). Ties count against the query.
    """
    scores = np.asarray(similarity, dtype=np.float64)
    trials = np.asarray(trial_stimulus)
    candidates = np.asarray(candidate_stimulus)
    if scores.shape != (trials.size, candidates.size):
        raise EvaluationError(
            f"similarity has shape {scores.shape}, "
            f"expected ({trials.size} trials, {candidates.size} candidates)"
        )
    if not np.isfinite(scores).all():
        raise EvaluationError("similarity contains NaN/inf values")
    column = {stimulus: c for c, stimulus in enumerate(candidates)}
    missing = sorted({int(s) for s in trials if s not in column})
    if missing:
        raise EvaluationError(f"trial stimuli {missing[:5]} are not among the candidates; include them")
    ks = (k,) if isinstance(k, int) else tuple(k)
    if not ks or any(not 1 <= value <= candidates.size for value in ks):
        raise EvaluationError(f"k values {ks} must lie in [1, {candidates.size}] candidates")
    own = scores[np.arange(trials.size), [column[s] for s in trials]]
    correct = trials[:, None] == candidates[None, :]
    brain_rank = ((scores >= own[:, None]) & ~correct).sum(axis=1)
    # image -> brain: rank of the best correct trial among the trials, counting wrong trials as close.
    best_correct = np.where(correct, scores, -np.inf).max(axis=0)
    image_rank = ((scores >= best_correct[None, :]) & ~correct).sum(axis=0)
    shown = np.isin(candidates, trials)
    return {
        "n_candidates": int(candidates.size),
        "brain_to_image": {f"top{v}": float(np.mean(brain_rank < v)) for v in ks},
        "image_to_brain": {f"top{v}": float(np.mean(image_rank[shown] < v)) for v in ks},
        "chance": {f"top{v}": v / candidates.size for v in ks},
    }
