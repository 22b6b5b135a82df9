"""Calibrated sampling of the fMRI LDM: moments matched to the training latents', observation noise added."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_diffusion.voxel.calibration import CALIBRATION_DRAWS, SampleCalibration
from fmri_diffusion.voxel.ldm import FmriLDM, FmriLDMConfig, train_fmri_ldm
from fmri_encoders.training import TrainingConfig


def _calibration(k: int = 3, voxels: int = 5, seed: int = 0) -> SampleCalibration:
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(400, k)) @ rng.normal(size=(k, k)) + rng.normal(size=k)
    return SampleCalibration.fit(latents, rng.normal(size=(50, voxels)) * np.arange(1, voxels + 1))


def test_matched_draws_have_the_training_latents_mean_and_covariance():
    calibration = _calibration()
    rng = np.random.default_rng(1)
    draws = 0.3 * rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3)) - 2  # too narrow, off centre
    matched = calibration.match_moments(draws)
    np.testing.assert_allclose(matched.mean(0), calibration.latent_mean, atol=1e-10)
    np.testing.assert_allclose(np.cov(matched, rowvar=False), calibration.latent_covariance, atol=1e-10)
    # an affine map: the DDPM's shape beyond the second moment (here: where the outlier is) is kept
    draws[7] += 40
    assert np.argmax(np.linalg.norm(calibration.match_moments(draws) - calibration.latent_mean, axis=1)) == 7


def test_observation_std_is_the_residuals_root_mean_square_and_round_trips(tmp_path):
    residuals = np.array([[1.0, -2.0], [-1.0, 2.0], [1.0, 2.0]])
    calibration = SampleCalibration.fit(np.eye(3), residuals)
    np.testing.assert_allclose(calibration.observation_std, [1.0, 2.0])
    noise = calibration.observation_noise(20_000, np.random.default_rng(0))
    np.testing.assert_allclose(noise.std(0), [1.0, 2.0], rtol=0.03)
    calibration.save(tmp_path / "c.safetensors")
    loaded = SampleCalibration.load(tmp_path / "c.safetensors")
    for name in ("latent_mean", "latent_covariance", "observation_std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(calibration, name))


@pytest.fixture(scope="module")
def barely_trained() -> tuple[FmriLDM, np.ndarray]:
    """A VAE at its PCA start and a DDPM after two steps: raw draws far from the training latents."""
    rng = np.random.default_rng(0)
    train = (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 12)) + 0.3 * rng.normal(size=(300, 12))).astype(
        np.float32
    )
    config = replace(
        FmriLDMConfig(latent_dim=2, hidden=(8,), dropout=0.0, denoiser_width=8, denoiser_blocks=1),
        vae_training=TrainingConfig(max_steps=2, batch_size=16, learning_rate=1e-9, ema_decay=None),
        ddpm_training=TrainingConfig(max_steps=2, batch_size=16),
    )
    model, _ = train_fmri_ldm(train, None, config, device="cpu", progress=False)
    return model, train


def test_calibrated_samples_have_the_training_patterns_spread(barely_trained):
    model, train = barely_trained
    calibrated = model.generate(CALIBRATION_DRAWS, steps=5)
    raw = model.generate(CALIBRATION_DRAWS, steps=5, calibrated=False)
    np.testing.assert_allclose(calibrated.std(0), train.std(0), rtol=0.2)
    np.testing.assert_allclose(calibrated.mean(0), train.mean(0), atol=0.2 * train.std(0).mean())
    spread_error = np.abs(np.log(raw.std(0) / train.std(0))).mean()
    assert spread_error > 3 * np.abs(np.log(calibrated.std(0) / train.std(0))).mean()


def test_fewer_samples_are_the_first_of_more_up_to_the_calibration_draws(barely_trained):
    model, _ = barely_trained
    # float32 to rounding: a BLAS may sum a batch of 3 and one of 7 in a different order
    np.testing.assert_allclose(
        model.generate(3, steps=5, seed=4), model.generate(7, steps=5, seed=4)[:3], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(model.generate(3, steps=5, seed=4), model.generate(3, steps=5, seed=5))


def test_a_model_saved_without_calibration_is_refused(barely_trained, tmp_path):
    model, _ = barely_trained
    model.save(tmp_path / "model")
    (tmp_path / "model" / "calibration.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"calibration\.safetensors.*train it again"):
        FmriLDM.load(tmp_path / "model")
