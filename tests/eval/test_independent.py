"""fmri_eval against straightforward re-implementations written here from the metric definitions."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from fmri_eval import evaluate_reconstructions, item_scores, ssim, twoway_identification


def reference_pcc(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.ravel().tolist(), b.ravel().tolist()
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y, strict=True))
    vx = sum((xi - mx) ** 2 for xi in x)
    vy = sum((yi - my) ** 2 for yi in y)
    return cov / math.sqrt(vx * vy)


def reference_mse(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.ravel().tolist(), b.ravel().tolist()
    return sum((xi - yi) ** 2 for xi, yi in zip(x, y, strict=True)) / len(x)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of Wang et al. 2004: Gaussian window sigma 1.5 (11 taps: truncate 3.5), population
    statistics, K1=0.01, K2=0.03, data range 1; mean of the map without the 5-pixel border,
    which is how scikit-image averages it."""

    def blur(image):
        return gaussian_filter(image, sigma=1.5, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    border = 5
    return float(ssim_map[border:-border, border:-border].mean())


def reference_twoway(truth: np.ndarray, recon: np.ndarray, stimulus_id=None) -> list[float]:
    n = len(truth)
    scores = []
    for j in range(n):
        own = reference_pcc(truth[j], recon[j])
        wins = total = 0
        for i in range(n):
            if i == j or (stimulus_id is not None and stimulus_id[i] == stimulus_id[j]):
                continue
            total += 1
            wins += reference_pcc(truth[i], recon[j]) < own
        scores.append(wins / total if total else math.nan)
    return scores


@pytest.fixture
def random_images():
    rng = np.random.default_rng(123)
    truth = rng.random((8, 16, 13))
    recon = np.clip(0.05 * truth + 0.95 * rng.random(truth.shape), 0, 1)  # weak: two-way below 1
    return truth, recon


def test_ssim_matches_reference_on_constructed_image():
    y, x = np.mgrid[0:12, 0:12]
    gradient = (x + y) / 22.0
    checker = ((x // 3 + y // 3) % 2).astype(float)
    truth = np.stack([gradient, checker])
    recon = np.stack([checker * 0.5 + 0.25, gradient])
    expected = [reference_ssim(t, r) for t, r in zip(truth, recon, strict=True)]
    np.testing.assert_allclose(ssim(truth, recon), expected, atol=1e-6)


def test_item_scores_match_loop_implementations(random_images):
    truth, recon = random_images
    stimulus_id = np.array([0, 0, 1, 2, 3, 3, 4, 5])
    scores = item_scores(truth, recon, stimulus_id)
    pairs = list(zip(truth, recon, strict=True))
    np.testing.assert_allclose(scores["pcc"], [reference_pcc(t, r) for t, r in pairs], atol=1e-6)
    np.testing.assert_allclose(scores["mse"], [reference_mse(t, r) for t, r in pairs], atol=1e-6)
    expected_psnr = [10 * math.log10(1 / reference_mse(t, r)) for t, r in pairs]
    np.testing.assert_allclose(scores["psnr"], expected_psnr, atol=1e-6)
    np.testing.assert_allclose(scores["ssim"], [reference_ssim(t, r) for t, r in pairs], atol=1e-6)
    np.testing.assert_allclose(scores["twoway"], reference_twoway(truth, recon, stimulus_id), atol=1e-6)


def test_twoway_on_features_matches_loop_implementation():
    rng = np.random.default_rng(7)
    truth = rng.standard_normal((9, 5))
    recon = truth + 1.5 * rng.standard_normal((9, 5))
    result = twoway_identification(truth, recon)
    expected = reference_twoway(truth, recon)
    np.testing.assert_allclose(result.per_item, expected, atol=1e-6)
    assert result.score == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    assert 0.0 < result.score < 1.0  # a noisy case, so the comparison is informative


def test_evaluate_means_match_loop_implementations(random_images):
    truth, recon = random_images
    result = evaluate_reconstructions(truth, {"noisy": recon}, n_boot=50)["noisy"]
    pairs = list(zip(truth, recon, strict=True))
    assert result["pcc"] == pytest.approx(np.mean([reference_pcc(t, r) for t, r in pairs]), abs=1e-6)
    assert result["mse"] == pytest.approx(np.mean([reference_mse(t, r) for t, r in pairs]), abs=1e-6)
    assert result["ssim"] == pytest.approx(np.mean([reference_ssim(t, r) for t, r in pairs]), abs=1e-6)
    assert result["twoway"] == pytest.approx(np.mean(reference_twoway(truth, recon)), abs=1e-6)
