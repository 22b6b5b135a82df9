"""fMRI-space metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_eval.errors import EvaluationError
from fmri_eval.fmri_metrics import distribution_metrics, moments, reconstruction_metrics

TRUTH = np.array([[0.0, 2.0], [4.0, 6.0]])
ESTIMATE = np.array([[1.0, 2.0], [4.0, 7.0]])  # errors 1, 0, 0, 1


def test_reconstruction_metrics_match_hand_values():
    m = reconstruction_metrics(TRUTH, ESTIMATE)
    assert m["mse"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(np.sqrt(0.5))
    assert m["mae"] == pytest.approx(0.5)
    # R²: residual 2, total around the voxel means (2, 4): 4 + 4 + 4 + 4 = 16
    assert m["r2"] == pytest.approx(1 - 2 / 16)
    # SNR: mean truth power (0 + 4 + 16 + 36) / 4 = 14 over MSE 0.5; PSNR: range 6, 36 / 0.5
    assert m["snr_db"] == pytest.approx(10 * np.log10(28))
    assert m["psnr_db"] == pytest.approx(10 * np.log10(72))
    # each sample has two values, both increasing: r = 1 per sample; per voxel both columns increase: 1
    assert m["pearson_samplewise_mean"] == pytest.approx(1.0)
    assert m["pearson_voxelwise_mean"] == pytest.approx(1.0)
    assert m["pearson_overall"] == pytest.approx(np.corrcoef(TRUTH.ravel(), ESTIMATE.ravel())[0, 1])


def test_a_perfect_estimate_and_a_bad_shape():
    m = reconstruction_metrics(TRUTH, TRUTH)
    assert m["mse"] == 0
    assert m["r2"] == 1
    assert m["snr_db"] == float("inf")
    with pytest.raises(EvaluationError, match="one shape"):
        reconstruction_metrics(TRUTH, TRUTH[:1])


def test_moments_of_a_symmetric_set():
    m = moments([-1.0, 0.0, 1.0])
    assert m["mean"] == pytest.approx(0.0)
    assert m["std"] == pytest.approx(np.sqrt(2 / 3))
    assert m["skewness"] == pytest.approx(0.0)
    assert m["kurtosis"] == pytest.approx(-1.5)  # (mean x^4 / var^2) - 3 = (2/3) / (4/9) - 3


def test_distribution_metrics_are_zero_for_identical_sets_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    same = distribution_metrics(data, data)
    assert same["ks_statistic"] == 0
    assert same["jsd"] == pytest.approx(0.0, abs=1e-12)
    assert same["correlation_structure_r"] == pytest.approx(1.0)
    shifted = distribution_metrics(data, data + 10 * data.std())
    assert shifted["ks_statistic"] > 0.9
    assert shifted["jsd"] > 0.9
    assert shifted["mean_difference"] == pytest.approx(10 * data.std())
    far = distribution_metrics(data, data + 100 * data.std())  # disjoint supports: the maxima of KS and JSD
    assert far["ks_statistic"] == 1
    assert far["jsd"] == pytest.approx(1.0)
    with pytest.raises(EvaluationError, match="same voxels"):
        distribution_metrics(data, data[:, :3])
