"""Bootstrap intervals (over trials and over stimuli) and paired comparisons."""

import numpy as np
import pytest

from fmri_eval import EvaluationError, bootstrap_ci, paired_comparison, resampling_unit


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
        ([1.0, 2.0], {"n_boot": 2.5}),
        ([1.0, 2.0], {"confidence": 1.0}),
        ([1.0, 2.0], {"clusters": [1, 2, 3]}),
    ],
)
def test_bad_values_raise(values, kwargs):
    with pytest.raises(EvaluationError):
        bootstrap_ci(values, **kwargs)


def test_resampling_unit():
    assert resampling_unit(None) == "trial"
    assert resampling_unit([3, 1, 2]) == "trial"
    assert resampling_unit(["a", "b", "a"]) == "stimulus"


def test_distinct_stimuli_give_exactly_the_trial_bootstrap():
    values = np.random.default_rng(6).random(15)
    ids = np.random.default_rng(7).permutation(100)[:15]
    assert bootstrap_ci(values, n_boot=500, seed=3, clusters=ids) == bootstrap_ci(values, n_boot=500, seed=3)


def test_cluster_bootstrap_on_two_stimuli_one_repeated_many_times():
    """Stimulus A: one trial scoring 0; stimulus B: nine trials scoring 1.

    Resampling the two stimuli gives {A, A} -> 0 (p 1/4), {A, B} -> 0.9 (p 1/2), {B, B} -> 1 (p 1/4),
    so the 95% interval is [0, 1] and the middle 40% is the single value 0.9. Resampling the ten
    trials as if independent gives an interval about 0.9 +- 0.19: far too narrow.
    """
    values = np.array([0.0] + [1.0] * 9)
    ids = np.array(["A"] + ["B"] * 9)
    mean, low, high = bootstrap_ci(values, n_boot=4000, seed=0, clusters=ids)
    assert mean == pytest.approx(0.9)
    assert (low, high) == (0.0, 1.0)
    assert bootstrap_ci(values, n_boot=4000, seed=0, clusters=ids, confidence=0.4)[1:] == (0.9, 0.9)
    _, trial_low, trial_high = bootstrap_ci(values, n_boot=4000, seed=0)
    assert trial_high - trial_low < 0.5 * (high - low)


def test_stimulus_intervals_are_wider_when_repeats_share_their_score():
    rng = np.random.default_rng(8)
    per_stimulus = rng.normal(0.6, 0.1, size=20)
    ids = np.repeat(np.arange(20), 6)
    values = per_stimulus[ids] + 0.01 * rng.standard_normal(ids.size)
    _, low, high = bootstrap_ci(values, seed=1, clusters=ids)
    _, trial_low, trial_high = bootstrap_ci(values, seed=1)
    # Six nearly identical trials per stimulus: the trial interval is about sqrt(6) too narrow.
    assert (high - low) / (trial_high - trial_low) == pytest.approx(np.sqrt(6), rel=0.25)


def reference_paired_interval(a, b, ids, n_boot, seed, confidence=0.95):
    """Plain re-computation: draw stimuli, pool their trials' differences, average, take quantiles."""
    order = list(dict.fromkeys(ids.tolist()))  # stimuli in order of first appearance
    trials = [np.flatnonzero(ids == stimulus) for stimulus in order]
    drawn = np.random.default_rng(seed).integers(0, len(order), size=(n_boot, len(order)))
    means = []
    for row in drawn:
        pooled = np.concatenate([trials[k] for k in row])
        means.append(np.mean(a[pooled] - b[pooled]))
    tail = (1 - confidence) / 2
    return np.quantile(means, [tail, 1 - tail]), np.array(means)


def test_paired_difference_matches_an_independent_computation():
    rng = np.random.default_rng(9)
    ids = np.array([4, 4, 4, 1, 7, 7, 2, 2, 2, 2, 9])
    a, b = rng.random(ids.size), rng.random(ids.size)
    result = paired_comparison(a, b, n_boot=700, seed=11, clusters=ids)
    (low, high), means = reference_paired_interval(a, b, ids, n_boot=700, seed=11)
    assert result.mean_difference == pytest.approx(np.mean(a - b), abs=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-12)
    tail = min(np.sum(means <= 0) + 1, np.sum(means >= 0) + 1)
    assert result.p_value == pytest.approx(min(1.0, 2 * tail / 701), abs=1e-12)
    assert result.n == ids.size


def test_paired_comparison_sign_and_significance():
    rng = np.random.default_rng(3)
    baseline = rng.random(100)
    better = baseline + 0.1 + 0.05 * rng.standard_normal(100)
    result = paired_comparison(better, baseline, n_boot=500)
    assert result.mean_difference == pytest.approx(np.mean(better - baseline))
    assert 0 < result.ci_low < result.mean_difference < result.ci_high
    assert result.p_value < 0.01
    assert result.n == 100
    reverse = paired_comparison(baseline, better, n_boot=500)
    assert reverse.mean_difference == pytest.approx(-result.mean_difference)
    assert reverse.ci_high < 0


def test_identical_methods_have_p_value_one():
    values = np.random.default_rng(4).random(30)
    result = paired_comparison(values, values, n_boot=200, clusters=np.arange(30) // 3)
    assert result.mean_difference == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert result.p_value == 1.0


def test_a_constant_shift_has_p_value_near_zero():
    values = np.random.default_rng(5).random(30)
    result = paired_comparison(values + 0.05, values, n_boot=2000, clusters=np.arange(30) // 3)
    assert result.mean_difference == pytest.approx(0.05)
    assert result.p_value == pytest.approx(2 / 2001)


def test_noise_around_zero_is_not_significant():
    rng = np.random.default_rng(12)
    a, b = rng.random(60), rng.random(60)
    result = paired_comparison(a, b, n_boot=2000, seed=0)
    assert result.ci_low < 0 < result.ci_high
    assert result.p_value > 0.05


def test_pairs_with_a_nan_are_dropped_and_shapes_must_match():
    a = np.array([0.5, np.nan, 0.7, 0.9])
    b = np.array([0.4, 0.3, np.nan, 0.6])
    assert paired_comparison(a, b, n_boot=50).n == 2
    with pytest.raises(EvaluationError, match="same test items"):
        paired_comparison(a, b[:3])
