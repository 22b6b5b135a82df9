"""Bootstrap intervals and paired comparisons."""

import itertools

import numpy as np
import pytest

from fmri_eval import EvaluationError, bootstrap_ci, paired_comparison


def test_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(0).normal(0.5, 0.1, size=200)
    mean, low, high = bootstrap_ci(values, n_boot=1000, seed=4)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert bootstrap_ci(values, n_boot=1000, seed=4) == (mean, low, high)
    assert bootstrap_ci(values, n_boot=1000, seed=5) != (mean, low, high)


def test_ci_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    _, low_small, high_small = bootstrap_ci(rng.normal(size=50), n_boot=500)
    _, low_large, high_large = bootstrap_ci(rng.normal(size=5000), n_boot=500)
    # Width scales like 1/sqrt(n): about 10x narrower here.
    assert (high_large - low_large) < 0.2 * (high_small - low_small)


def test_ci_width_matches_normal_theory():
    values = np.random.default_rng(2).normal(size=400)
    _, low, high = bootstrap_ci(values, n_boot=4000, confidence=0.9)
    expected = 2 * 1.6449 * values.std() / np.sqrt(values.size)
    assert high - low == pytest.approx(expected, rel=0.1)


def test_nan_values_are_ignored():
    values = np.array([0.2, np.nan, 0.4, 0.9, np.nan, 0.1])
    assert bootstrap_ci(values, n_boot=300) == bootstrap_ci(values[~np.isnan(values)], n_boot=300)


def test_constant_values_give_a_zero_width_interval():
    assert bootstrap_ci(np.full(10, 0.25), n_boot=100) == pytest.approx((0.25, 0.25, 0.25))


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [
        ([np.nan, np.nan], {}),
        (np.ones((2, 2)), {}),
        ([1.0, np.inf], {}),
        ([1.0, 2.0], {"n_boot": 0}),
        ([1.0, 2.0], {"confidence": 1.0}),
    ],
)
def test_bad_values_raise(values, kwargs):
    with pytest.raises(EvaluationError):
        bootstrap_ci(values, **kwargs)


def test_paired_comparison_sign_and_significance():
    rng = np.random.default_rng(3)
    baseline = rng.random(100)
    better = baseline + 0.1 + 0.05 * rng.standard_normal(100)
    result = paired_comparison(better, baseline, n_boot=500, n_permutations=2000)
    assert result.mean_difference == pytest.approx(np.mean(better - baseline))
    assert 0 < result.ci_low < result.mean_difference < result.ci_high
    assert result.p_value < 0.01
    assert result.n == 100
    reverse = paired_comparison(baseline, better, n_boot=500, n_permutations=2000)
    assert reverse.mean_difference == pytest.approx(-result.mean_difference)
    assert reverse.ci_high < 0


def test_identical_methods_have_p_value_one():
    values = np.random.default_rng(4).random(30)
    result = paired_comparison(values, values, n_boot=200, n_permutations=500)
    assert result.mean_difference == 0.0
    assert result.p_value == 1.0


def test_sign_flip_p_value_matches_exact_enumeration():
    differences = np.array([0.30, 0.12, -0.05, 0.22, 0.18, -0.10])
    observed = abs(differences.mean())
    flips = [np.array(signs) * differences for signs in itertools.product([-1, 1], repeat=differences.size)]
    exact = np.mean([abs(flip.mean()) >= observed - 1e-12 for flip in flips])
    result = paired_comparison(differences, np.zeros(6), n_boot=100, n_permutations=20000, seed=1)
    assert result.p_value == pytest.approx(exact, abs=0.01)


def test_pairs_with_a_nan_are_dropped_and_shapes_must_match():
    a = np.array([0.5, np.nan, 0.7, 0.9])
    b = np.array([0.4, 0.3, np.nan, 0.6])
    assert paired_comparison(a, b, n_boot=50, n_permutations=50).n == 2
    with pytest.raises(EvaluationError, match="same test items"):
        paired_comparison(a, b[:3])
