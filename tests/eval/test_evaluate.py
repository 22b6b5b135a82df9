"""evaluate_reconstructions and evaluate_run: structure, consistency and errors."""

import numpy as np
import pytest

from fmri_eval import (
    EvaluationError,
    EvaluationSettings,
    bootstrap_ci,
    choose_baseline,
    evaluate_reconstructions,
    evaluate_run,
    item_scores,
    paired_comparison,
)

SCORES = ["pcc", "ssim", "mse", "psnr", "twoway"]


@pytest.fixture
def test_set():
    rng = np.random.default_rng(0)
    truth = rng.random((10, 12, 12))
    good = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    bad = rng.random(truth.shape)
    stimulus_id = np.arange(10) // 2
    return truth, {"ridge": bad, "ddpm-1": good}, stimulus_id


def test_structure_and_consistency_with_bootstrap(test_set):
    truth, methods, stimulus_id = test_set
    result = evaluate_reconstructions(truth, methods, stimulus_id, n_boot=300, seed=2)
    assert list(result) == ["ridge", "ddpm-1"]
    for name, summary in result.items():
        assert list(summary) == SCORES + [f"{score}_ci" for score in SCORES]
        per_item = item_scores(truth, methods[name], stimulus_id)
        for score in SCORES:
            mean, low, high = bootstrap_ci(per_item[score], n_boot=300, seed=2, clusters=stimulus_id)
            assert summary[score] == mean
            assert summary[f"{score}_ci"] == [low, high]
            assert isinstance(summary[score], float)
            assert low <= mean <= high
    assert result["ddpm-1"]["pcc"] > result["ridge"]["pcc"] + 0.5
    assert result["ddpm-1"]["twoway"] == 1.0


def test_twoway_uses_stimulus_ids(test_set):
    truth, _, _ = test_set
    paired_truth = truth[np.arange(10) // 2 * 2]  # trials 2k and 2k+1 show the same image
    recon = {"copy": paired_truth}
    with_ids = evaluate_reconstructions(paired_truth, recon, np.arange(10) // 2, n_boot=50)
    assert with_ids["copy"]["twoway"] == 1.0


def test_differences_from_the_baseline(test_set):
    truth, methods, stimulus_id = test_set
    result = evaluate_reconstructions(truth, methods, stimulus_id, n_boot=300, baseline="ridge")
    assert "vs_baseline" not in result["ridge"]
    comparison = result["ddpm-1"]["vs_baseline"]
    assert list(comparison) == SCORES
    assert comparison["pcc"]["delta"] > 0
    assert comparison["pcc"]["ci"][0] > 0
    assert comparison["mse"]["delta"] < 0  # lower mse is better
    assert comparison["pcc"]["p"] < 0.01


def test_vs_baseline_is_the_paired_stimulus_bootstrap_of_the_item_scores(test_set):
    truth, methods, stimulus_id = test_set
    methods = {**methods, "copy": truth}
    result = evaluate_reconstructions(truth, methods, stimulus_id, n_boot=300, seed=5, baseline="ridge")
    assert {difference["p"] for difference in result["copy"]["vs_baseline"].values()} == {2 / 301}
    ridge_scores = item_scores(truth, methods["ridge"], stimulus_id)
    ddpm_scores = item_scores(truth, methods["ddpm-1"], stimulus_id)
    for score in SCORES:
        expected = paired_comparison(
            ddpm_scores[score], ridge_scores[score], n_boot=300, seed=5, clusters=stimulus_id
        )
        got = result["ddpm-1"]["vs_baseline"][score]
        assert got == {
            "delta": expected.mean_difference,
            "ci": [expected.ci_low, expected.ci_high],
            "p": expected.p_value,
        }
        assert got["delta"] == pytest.approx(result["ddpm-1"][score] - result["ridge"][score])


def test_a_method_s_numbers_do_not_depend_on_the_other_methods(test_set):
    truth, methods, stimulus_id = test_set
    alone = evaluate_reconstructions(truth, methods, stimulus_id, n_boot=200, baseline="ridge")
    more = {"first": np.clip(truth + 0.2, 0, 1), **methods, "last": np.zeros_like(truth)}
    together = evaluate_reconstructions(truth, more, stimulus_id, n_boot=200, baseline="ridge")
    for name in methods:
        assert together[name] == alone[name]


def test_evaluate_run_states_how_intervals_were_made(test_set):
    truth, methods, stimulus_id = test_set
    settings = EvaluationSettings(n_boot=150, seed=3, baseline="ridge")
    run = evaluate_run(truth, methods, stimulus_id, settings)
    assert list(run) == ["n_test", "n_stimuli", "repeats_averaged", "ci", "baseline", "methods"]
    assert (run["n_test"], run["n_stimuli"], run["repeats_averaged"]) == (10, 5, False)
    assert run["ci"] == {"level": 0.95, "unit": "stimulus", "n_boot": 150, "seed": 3}
    assert run["methods"] == evaluate_reconstructions(truth, methods, stimulus_id, 150, 3, baseline="ridge")
    distinct = evaluate_run(truth, methods, np.arange(10), settings)
    assert distinct["ci"]["unit"] == "trial"
    assert distinct["n_stimuli"] == 10


def test_choose_baseline():
    assert choose_baseline(["mean", "ridge", "mlp"]) == "ridge"
    assert choose_baseline(["mean", "mlp"]) is None
    assert choose_baseline(["mean", "mlp"], "mean") == "mean"
    with pytest.raises(EvaluationError, match="baseline 'ridge' is not among"):
        choose_baseline(["mean", "mlp"], "ridge")


def test_unknown_baseline_is_an_error(test_set):
    truth, methods, stimulus_id = test_set
    with pytest.raises(EvaluationError, match="'mean'"):
        evaluate_reconstructions(truth, methods, stimulus_id, baseline="mean")


def test_bad_method_array_is_named_in_the_error(test_set):
    truth, methods, _ = test_set
    with pytest.raises(EvaluationError, match="'ddpm-1'"):
        evaluate_reconstructions(truth, {"ddpm-1": methods["ddpm-1"][:5]})


def test_no_methods_is_an_error(test_set):
    truth, _, _ = test_set
    with pytest.raises(EvaluationError, match="no reconstructions"):
        evaluate_reconstructions(truth, {})
