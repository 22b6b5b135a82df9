"""Per-image metrics against values computed by hand on tiny images."""

import math

import numpy as np
import pytest

from fmri_eval import EvaluationError, image_metrics, mse, pcc, psnr, ssim
from fmri_eval.metrics import PSNR_CAP_DB

CHECKER = np.array([[0.0, 1.0], [1.0, 0.0]])


def test_pcc_mse_psnr_on_2x2_images():
    truth = np.stack([CHECKER, CHECKER, CHECKER])
    recon = np.stack([[[0.0, 1.0], [0.5, 0.5]], 1.0 - CHECKER, CHECKER])
    # Image 0: centred truth (-.5, .5, .5, -.5), centred recon (-.5, .5, 0, 0):
    # r = 0.5 / (1 * sqrt(0.5)); squared errors (0, 0, .25, .25) -> mse 0.125, psnr 10 log10(8).
    # Image 1: inverted image -> r = -1, mse = 1, psnr = 0. Image 2: identical -> r = 1, psnr capped.
    np.testing.assert_allclose(pcc(truth, recon), [1 / math.sqrt(2), -1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(mse(truth, recon), [0.125, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(psnr(truth, recon), [10 * math.log10(8), 0.0, PSNR_CAP_DB], atol=1e-9)


def test_metrics_on_3x3_affine_copy():
    truth = (np.arange(9.0) / 8).reshape(1, 3, 3)
    recon = 0.5 * truth + 0.25
    # recon - truth = -0.5 (k - 4) / 8 for k = 0..8; sum of (k - 4)^2 is 60, so mse = 60 / (4 * 64 * 9).
    expected_mse = 60 / 2304
    np.testing.assert_allclose(pcc(truth, recon), [1.0], atol=1e-12)
    np.testing.assert_allclose(mse(truth, recon), [expected_mse], atol=1e-12)
    np.testing.assert_allclose(psnr(truth, recon), [10 * math.log10(2304 / 60)], atol=1e-9)


def test_pcc_is_zero_for_constant_images():
    truth = np.stack([CHECKER, np.full((2, 2), 0.3)])
    recon = np.stack([np.full((2, 2), 0.7), CHECKER])
    np.testing.assert_array_equal(pcc(truth, recon), [0.0, 0.0])


def test_psnr_is_capped_for_identical_images():
    images = np.random.default_rng(0).random((2, 4, 4))
    np.testing.assert_array_equal(psnr(images, images), [PSNR_CAP_DB, PSNR_CAP_DB])


def test_ssim_of_constant_images_matches_closed_form():
    # With zero variance SSIM reduces to the luminance term (2 a b + C1) / (a^2 + b^2 + C1), C1 = 0.01^2.
    a, b = 0.3, 0.8
    truth = np.full((1, 12, 12), a)
    recon = np.full((1, 12, 12), b)
    c1 = 0.01**2
    np.testing.assert_allclose(ssim(truth, recon), [(2 * a * b + c1) / (a * a + b * b + c1)], atol=1e-6)


def test_ssim_of_identical_images_is_one():
    images = np.random.default_rng(1).random((3, 12, 14))
    np.testing.assert_allclose(ssim(images, images), 1.0, atol=1e-12)


def test_ssim_rejects_images_smaller_than_the_window():
    images = np.zeros((1, 10, 20))
    with pytest.raises(EvaluationError, match="11x11"):
        ssim(images, images)


def test_image_metrics_returns_every_metric_per_image():
    rng = np.random.default_rng(2)
    truth, recon = rng.random((2, 4, 12, 12))
    scores = image_metrics(truth, recon)
    assert list(scores) == ["pcc", "ssim", "mse", "psnr"]
    for name, function in [("pcc", pcc), ("ssim", ssim), ("mse", mse), ("psnr", psnr)]:
        np.testing.assert_array_equal(scores[name], function(truth, recon))


@pytest.mark.parametrize(
    ("truth", "recon", "match"),
    [
        (np.zeros((2, 3, 3)), np.zeros((2, 3, 4)), "shape"),
        (np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), "shape"),
        (np.zeros((3, 3)), np.zeros((3, 3)), r"\[n, H, W\]"),
        (np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), r"n >= 1"),
        (np.zeros((1, 3, 3)), np.full((1, 3, 3), np.nan), "NaN"),
        (np.zeros((1, 3, 3)), np.full((1, 3, 3), 1.5), r"\[0, 1\]"),
        (np.full((1, 3, 3), -0.1), np.zeros((1, 3, 3)), r"\[0, 1\]"),
    ],
)
def test_bad_inputs_raise_one_line_errors(truth, recon, match):
    with pytest.raises(EvaluationError, match=match) as info:
        mse(truth, recon)
    assert "\n" not in str(info.value)
