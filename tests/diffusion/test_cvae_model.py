import numpy as np
import pytest
import torch
from accelerate.utils import set_seed

from fmri_diffusion.models.cvae import (
    ConditionalVaeNet,
    CvaeConfig,
    kl_to_standard_normal,
    load_cvae,
    negative_elbo,
    save_cvae,
)
from fmri_encoders.training import BatchSampler, TrainingConfig, train


def _train(model, images, conditions, steps, seed=0):
    pairs = {"x": torch.from_numpy(images[:, None]), "c": torch.from_numpy(conditions[:, None])}
    config = TrainingConfig(
        max_steps=steps,
        batch_size=8,
        learning_rate=2e-3,
        warmup_steps=0,
        ema_decay=None,
        progress=False,
        device="cpu",
        seed=seed,
    )
    loss = lambda model, batch, _: negative_elbo(model, batch["x"], batch["c"], 1.0)[0]  # noqa: E731
    return train(model, loss, BatchSampler(pairs, 8, seed=seed), config)


def _pairs(n: int = 8, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binary images and a noisy copy of each as its condition."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n, size, size)) > 0.6).astype(np.float32)
    return images, (images + 0.3 * rng.normal(size=images.shape)).astype(np.float32)


@pytest.mark.parametrize("size", [28, 32, 15])
def test_shapes(size):
    model = ConditionalVaeNet(CvaeConfig(image_size=size, latent_dim=5, width=8))
    x, c = torch.rand(3, 1, size, size), torch.rand(3, 1, size, size)
    logits, mean, log_var = model(x, c)
    assert logits.shape == (3, 1, size, size)
    assert mean.shape == log_var.shape == (3, 5)
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    samples = model.decode(z, model.condition_features(c))
    assert samples.shape == (3, 1, size, size)
    assert 0.0 <= samples.min() <= samples.max() <= 1.0


def test_kl_is_zero_at_the_prior_and_matches_a_hand_value():
    zeros = torch.zeros(2, 3)
    torch.testing.assert_close(kl_to_standard_normal(zeros, zeros), torch.zeros(2))
    # KL(N(1, e^1) || N(0, 1)) per dimension = 0.5 * (1 + e - 1 - 1) = 0.5 * (e - 1); summed over 3 dims.
    ones = torch.ones(1, 3)
    torch.testing.assert_close(kl_to_standard_normal(ones, ones), torch.tensor([1.5 * (np.e - 1)]))


def test_training_lowers_the_loss_on_a_tiny_batch():
    images, conditions = _pairs()
    set_seed(0)
    model = ConditionalVaeNet(CvaeConfig(image_size=12, latent_dim=4, width=8))
    x, c = torch.from_numpy(images[:, None]), torch.from_numpy(conditions[:, None])
    before = negative_elbo(model, x, c, beta=1.0)[0].item()
    _train(model, images, conditions, steps=100)
    set_seed(1)
    after = negative_elbo(model, x, c, beta=1.0)[0].item()
    assert after < 0.8 * before


def test_save_load_round_trip_gives_identical_decoder_outputs(tmp_path):
    set_seed(0)
    model = ConditionalVaeNet(CvaeConfig(image_size=12, latent_dim=4, width=8)).eval()
    save_cvae(model, tmp_path / "cvae")
    loaded = load_cvae(tmp_path / "cvae")
    assert loaded.config == model.config
    _, conditions = _pairs()
    c = torch.from_numpy(conditions[:, None])
    z = torch.randn(len(c), 4)
    with torch.no_grad():
        expected = model.decode_logits(z, model.condition_features(c))
        torch.testing.assert_close(loaded.decode_logits(z, loaded.condition_features(c)), expected)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "cvae").iterdir())


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cvae\.json"):
        load_cvae(tmp_path)


def test_training_is_seeded_on_cpu():
    images, conditions = _pairs()

    def trained(seed: int) -> dict[str, torch.Tensor]:
        set_seed(seed)
        model = ConditionalVaeNet(CvaeConfig(image_size=12, latent_dim=4, width=8))
        _train(model, images, conditions, steps=3, seed=seed)
        return model.state_dict()

    first, again, other = trained(3), trained(3), trained(4)
    for name in first:
        torch.testing.assert_close(first[name], again[name], rtol=0, atol=0)
    assert any(not torch.equal(first[name], other[name]) for name in first)
