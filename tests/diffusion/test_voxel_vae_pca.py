"""The voxel VAE starts as PCA (linear path + zero residual) and training keeps it never worse than PCA on
the validation patterns that choose its weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_diffusion.models.voxel_vae import VoxelVAE
from fmri_diffusion.voxel.ldm import FmriLDMConfig, _pca_reconstruction, _validation_split, train_fmri_ldm
from fmri_encoders.training import TrainingConfig


def _pca_by_covariance(train: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-k axes [n_voxels, k] from the covariance's eigenvectors: independent of the SVD code."""
    values, vectors = np.linalg.eigh(np.cov(train, rowvar=False))
    return train.mean(0), vectors[:, np.argsort(values)[::-1][:k]]


def _toy(n: int, seed: int) -> np.ndarray:
    """Rank-3 linear patterns plus a nonlinear part and a little noise: 12 voxels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    mixing = np.random.default_rng(99).normal(size=(2, 3, 12))
    return (z @ mixing[0] + np.tanh(2 * z) @ mixing[1] + 0.05 * rng.normal(size=(n, 12))).astype(np.float32)


def _pca_vae(train: np.ndarray, k: int) -> VoxelVAE:
    torch.manual_seed(0)
    return VoxelVAE(train.shape[1], latent_dim=k, hidden=(16, 8)).init_from_pca(train).eval()


@torch.no_grad()
def test_at_initialisation_the_vae_reconstructs_as_pca_of_the_same_latent_size():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 20)) @ rng.normal(size=(20, 20)) + rng.normal(size=20)
    test = rng.normal(size=(15, 20)) @ rng.normal(size=(20, 20))
    mean, axes = _pca_by_covariance(train, 5)
    expected = (test - mean) @ axes @ axes.T + mean
    reconstruction = _pca_vae(train, 5)(torch.from_numpy(test).float())[0].numpy()
    np.testing.assert_allclose(reconstruction, expected, atol=1e-4)
    np.testing.assert_allclose(_pca_reconstruction(train, test, 5), expected, atol=1e-8)


@torch.no_grad()
def test_encode_gives_the_pca_scores_and_a_unit_posterior():
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(40, 10)) * np.arange(1, 11), rng.normal(size=(8, 10))
    mean, axes = _pca_by_covariance(train, 3)
    scores = (test - mean) @ axes
    mu, logvar = _pca_vae(train, 3).encode(torch.from_numpy(test).float())
    signs = np.sign((mu.numpy() * scores).sum(0))  # an axis is defined up to its sign
    np.testing.assert_allclose(mu.numpy(), scores * signs, atol=1e-4)
    assert torch.equal(logvar, torch.zeros_like(logvar))


def test_save_and_load_keep_the_pca_path(tmp_path):
    train = np.random.default_rng(2).normal(size=(30, 9))
    vae = _pca_vae(train, 4)
    vae.save_pretrained(tmp_path / "vae")
    loaded = VoxelVAE.from_pretrained(tmp_path / "vae").eval()
    assert loaded.config.linear_path
    torch.testing.assert_close(loaded.components, vae.components)
    torch.testing.assert_close(loaded.mean, vae.mean)
    x = torch.from_numpy(train[:5]).float()
    torch.testing.assert_close(loaded(x)[0], vae(x)[0])


def test_without_the_linear_path_there_is_no_pca_to_initialise():
    vae = VoxelVAE(6, latent_dim=2, hidden=(4,), linear_path=False)
    assert not hasattr(vae, "components")
    with pytest.raises(ValueError, match="linear_path"):
        vae.init_from_pca(np.zeros((5, 6)))


def _tiny_config(learning_rate: float, steps: int = 40) -> FmriLDMConfig:
    return replace(
        FmriLDMConfig(latent_dim=2, hidden=(16,), dropout=0.0, denoiser_width=8, denoiser_blocks=1),
        vae_training=TrainingConfig(
            max_steps=steps, batch_size=16, learning_rate=learning_rate, warmup_steps=5, ema_decay=None
        ),
        ddpm_training=TrainingConfig(max_steps=2, batch_size=16),
        validate_every=10,
    )


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


@pytest.mark.parametrize(
    ("learning_rate", "steps", "improves"),
    [(1e-2, 150, True), (3.0, 40, False)],  # 3.0 wrecks the weights: the PCA start must be kept
)
def test_training_is_never_worse_than_pca_on_the_validation_patterns(learning_rate, steps, improves):
    train, validation = _toy(256, 0), _toy(64, 1)
    config = _tiny_config(learning_rate, steps)
    model, results = train_fmri_ldm(train, validation, config, device="cpu", progress=False)
    vae_mse = _mse(model.reconstruct(validation), validation)
    assert vae_mse <= _mse(_pca_reconstruction(train, validation, 2), validation) + 1e-6
    record = results["vae"]
    assert record.validation[0][0] == 0  # step 0, the PCA start, competed
    assert dict(record.validation)[record.best_step] == min(score for _, score in record.validation)
    assert (record.best_step > 0) == improves  # the residual learned the nonlinear part, or step 0 won


def test_without_validation_patterns_they_are_held_out_of_the_training_ones():
    train = _toy(50, 3)
    fit, validation = _validation_split(train, 0.2, seed=0)
    assert (len(fit), len(validation)) == (40, 10)
    rows = {row.tobytes() for row in train}
    assert {row.tobytes() for row in fit} | {row.tobytes() for row in validation} == rows
    assert not {row.tobytes() for row in fit} & {row.tobytes() for row in validation}
    config = replace(_tiny_config(3.0), validation_fraction=0.2)
    model, results = train_fmri_ldm(train, None, config, device="cpu", progress=False)
    assert (
        _mse(model.reconstruct(validation), validation)
        <= _mse(_pca_reconstruction(train, validation, 2), validation) + 1e-6
    )
    assert results["vae"].best_step == 0
