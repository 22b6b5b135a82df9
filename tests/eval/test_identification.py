"""Identification and retrieval on constructed cases with known answers."""

import numpy as np
import pytest
from scipy.linalg import hadamard

from fmri_eval import (
    EvaluationError,
    bidirectional_retrieval,
    nway_identification,
    retrieval_topk,
    twoway_identification,
)

# Rows 1..4 of an 8x8 Hadamard matrix are zero-mean and mutually orthogonal, so the four
# "images" below have pairwise pixel correlation exactly 0 (the affine map keeps correlations).
ROWS = hadamard(8)[1:5].astype(float)
TRUTH = (0.5 + 0.25 * ROWS).reshape(4, 2, 4)


def mostly_other_image() -> np.ndarray:
    """Recon 0 looks mostly like image 1: r with truth 0 is 0.2/sqrt(0.68), with truth 1 0.8/sqrt(0.68)."""
    recon = TRUTH.copy()
    recon[0] = 0.2 * TRUTH[0] + 0.8 * TRUTH[1]
    return recon


def test_perfect_reconstruction_scores_one():
    result = twoway_identification(TRUTH, TRUTH)
    assert result.score == 1.0
    np.testing.assert_array_equal(result.per_item, np.ones(4))


def test_reconstruction_resembling_another_image_loses_that_pair():
    # Recon 0 beats truths 2 and 3 (r = 0) but loses to truth 1: 2 of 3. The others win 3 of 3.
    result = twoway_identification(TRUTH, mostly_other_image())
    np.testing.assert_allclose(result.per_item, [2 / 3, 1, 1, 1])
    assert result.score == pytest.approx((2 / 3 + 3) / 4)


def test_reconstruction_equal_to_another_truth_and_ties_fail():
    # Zero-mean rows of norm 2 standardize to exact +-0.5 entries, so every correlation is exact.
    truth = hadamard(4)[1:].astype(float)
    recon = truth.copy()
    recon[0] = truth[1]
    # Recon 0: r = 0 with its own truth, 1 with truth 1 (a loss) and exactly 0 with truth 2 (a tie,
    # which counts as a failure): 0 of 2. The others win both comparisons.
    result = twoway_identification(truth, recon)
    np.testing.assert_array_equal(result.per_item, [0.0, 1.0, 1.0])
    assert result.score == pytest.approx(2 / 3)


def test_works_on_flat_features_too():
    result = twoway_identification(ROWS, mostly_other_image().reshape(4, -1))
    assert result.score == pytest.approx((2 / 3 + 3) / 4)


def test_same_stimulus_competitors_are_left_out():
    # Trials 0 and 1 share a stimulus, so truth 1 no longer counts against recon 0 (and vice versa).
    stimulus_id = np.array([7, 7, 8, 9])
    result = twoway_identification(TRUTH, mostly_other_image(), stimulus_id=stimulus_id)
    np.testing.assert_allclose(result.per_item, [1, 1, 1, 1])


def test_repeated_stimulus_with_identical_truths_is_not_penalised():
    truth = TRUTH[[0, 0, 1, 2]]
    recon = truth.copy()
    result = twoway_identification(truth, recon, stimulus_id=[5, 5, 6, 7])
    assert result.score == 1.0


def test_no_competitor_of_another_stimulus_is_an_error():
    with pytest.raises(EvaluationError, match="two different stimuli"):
        twoway_identification(TRUTH, TRUTH, stimulus_id=[1, 1, 1, 1])


def test_stimulus_id_must_match_trials():
    with pytest.raises(EvaluationError, match="stimulus_id"):
        twoway_identification(TRUTH, TRUTH, stimulus_id=[1, 2, 3])


def test_nway_with_every_distractor_drawn_is_exact():
    # 4-way with 4 items: every trial shows all three distractors, and recon 0 always loses to truth 1.
    result = nway_identification(TRUTH, mostly_other_image(), n_way=4, n_trials=20)
    np.testing.assert_array_equal(result.per_item, [0, 1, 1, 1])
    assert result.score == 0.75


def test_nway_two_way_rate_approaches_expected_fraction():
    # 2-way: recon 0 fails exactly when the drawn distractor is truth 1, i.e. one time in three.
    result = nway_identification(TRUTH, mostly_other_image(), n_way=2, n_trials=4000, seed=3)
    assert result.per_item[0] == pytest.approx(2 / 3, abs=0.03)
    again = nway_identification(TRUTH, mostly_other_image(), n_way=2, n_trials=4000, seed=3)
    np.testing.assert_array_equal(result.per_item, again.per_item)


def test_nway_ties_count_as_failures():
    truth = hadamard(4)[1:].astype(float)  # exact correlations, as in the two-way tie test
    recon = truth.copy()
    recon[0] = truth[1]
    # Recon 0 loses to truth 1 and ties (exactly 0) with truth 2, so every 2-way trial fails.
    result = nway_identification(truth, recon, n_way=2, n_trials=50)
    np.testing.assert_array_equal(result.per_item, [0.0, 1.0, 1.0])


def test_nway_draws_distractors_from_other_stimuli():
    result = nway_identification(TRUTH, mostly_other_image(), n_way=3, n_trials=50, stimulus_id=[7, 7, 8, 9])
    np.testing.assert_array_equal(result.per_item, [1, 1, 1, 1])


def test_nway_needs_enough_distractors():
    with pytest.raises(EvaluationError, match="lower n_way"):
        nway_identification(TRUTH, TRUTH, n_way=5)


# Candidates are the unit vectors; query 1 prefers candidate 2 (rank 1) and query 3 prefers
# candidates 4 and 0 (rank 2); the others find their own candidate first.
CANDIDATES = np.eye(5)
QUERIES = np.array(
    [
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.5, 0.6, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.1, 0.6],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)


def test_retrieval_topk_known_ranks():
    assert retrieval_topk(QUERIES, CANDIDATES, k=(1, 2, 3)) == {"top1": 0.6, "top2": 0.8, "top3": 1.0}
    # Centring shifts every similarity of a query equally here, so correlation gives the same ranks.
    assert retrieval_topk(QUERIES, CANDIDATES, k=1, metric="correlation") == {"top1": 0.6}


def test_retrieval_ties_count_against_the_query():
    queries = np.eye(3)
    queries[0] = [1.0, 1.0, 0.0]
    assert retrieval_topk(queries, np.eye(3), k=(1, 2)) == {"top1": 2 / 3, "top2": 1.0}


def test_bidirectional_retrieval_differs_by_direction():
    # Image i against brain j: similarity QUERIES[j, i] / |QUERIES[j]|, which ranks each own brain first.
    result = bidirectional_retrieval(QUERIES, CANDIDATES, k=(1,))
    assert result == {"brain_to_image": {"top1": 0.6}, "image_to_brain": {"top1": 1.0}}


@pytest.mark.parametrize(("k", "metric"), [((0,), "cosine"), ((6,), "cosine"), ((1,), "euclid")])
def test_retrieval_bad_arguments(k, metric):
    with pytest.raises(EvaluationError):
        retrieval_topk(QUERIES, CANDIDATES, k=k, metric=metric)
