"""evaluate_reconstructions and compare_to_reference: structure, consistency and errors."""

import numpy as np
import pytest

from fmri_eval import (
    EvaluationError,
    bootstrap_ci,
    compare_to_reference,
    evaluate_reconstructions,
    item_scores,
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
            mean, low, high = bootstrap_ci(per_item[score], n_boot=300, seed=2)
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


def test_compare_to_reference(test_set):
    truth, methods, stimulus_id = test_set
    result = compare_to_reference(truth, methods, "ridge", stimulus_id, n_boot=300)
    assert list(result) == ["ddpm-1"]
    comparison = result["ddpm-1"]
    assert list(comparison) == SCORES
    assert comparison["pcc"]["difference"] > 0
    assert comparison["pcc"]["ci"][0] > 0
    assert comparison["mse"]["difference"] < 0  # lower mse is better
    assert comparison["pcc"]["p_value"] < 0.01


def test_unknown_reference_is_an_error(test_set):
    truth, methods, stimulus_id = test_set
    with pytest.raises(EvaluationError, match="'ridge'"):
        compare_to_reference(truth, {"ddpm-1": methods["ddpm-1"]}, "ridge", stimulus_id)


def test_bad_method_array_is_named_in_the_error(test_set):
    truth, methods, _ = test_set
    with pytest.raises(EvaluationError, match="'ddpm-1'"):
        evaluate_reconstructions(truth, {"ddpm-1": methods["ddpm-1"][:5]})


def test_no_methods_is_an_error(test_set):
    truth, _, _ = test_set
    with pytest.raises(EvaluationError, match="no reconstructions"):
        evaluate_reconstructions(truth, {})
