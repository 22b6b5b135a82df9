import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods.cvae import ConditionalVAE, ConditionalVAEConfig
from fmri_encoders.training import TrainingConfig


def _blob_toy(n_stimuli: int = 24, repeats: int = 2, size: int = 16, n_voxels: int = 80) -> PairedDataset:
    """Two gaussian blobs per 16x16 image seen through a random linear map plus noise; last 6 stimuli test."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]
    stimuli = np.zeros((n_stimuli, size, size), np.float32)
    for image in stimuli:
        for _ in range(2):
            row, col = rng.uniform(3, size - 3, 2)
            radius = rng.uniform(1.5, 3.0)
            np.maximum(image, np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * radius**2)), out=image)
    ids = np.repeat(np.arange(n_stimuli), repeats)
    fmri = stimuli[ids].reshape(len(ids), -1) @ (rng.normal(size=(size * size, n_voxels)) / size)
    fmri += 0.3 * rng.normal(size=fmri.shape)
    return PairedDataset(fmri=fmri, images=stimuli[ids], stimulus_id=ids, given_test=ids >= n_stimuli - 6)


def _pixel_correlation(prediction: np.ndarray, truth: np.ndarray) -> float:
    a = prediction.reshape(len(prediction), -1)
    b = truth.reshape(len(truth), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))))


def test_cvae_reports_mean_and_one_sample_and_beats_the_mean_image():
    data = _blob_toy()
    train, test = data.subset(~data.given_test), data.subset(data.given_test)
    method = ConditionalVAE(
        MethodSettings(device="cpu"),
        ConditionalVAEConfig(
            training=TrainingConfig(
                max_steps=120, batch_size=16, learning_rate=2e-3, ema_decay=None, progress=False
            )
        ),
    )
    outputs = method.fit(train).predict_named(test.fmri)
    assert set(outputs) == {"cvae", "cvae-1"}
    for images in outputs.values():
        assert images.shape == (test.n_trials, 16, 16)
        assert images.dtype == np.float32
        assert 0.0 <= images.min() <= images.max() <= 1.0
    np.testing.assert_array_equal(method.predict(test.fmri), outputs["cvae"])
    mean_image = np.broadcast_to(train.images.mean(axis=0), test.images.shape)
    baseline = _pixel_correlation(mean_image, test.images)
    assert _pixel_correlation(outputs["cvae"], test.images) > baseline + 0.1


def test_cvae_is_registered_seeded_and_quick():
    data = _blob_toy(n_stimuli=8)
    runs = [
        create_method("cvae", MethodSettings(device="cpu", quick=True, seed=2)).fit(data) for _ in range(2)
    ]
    assert isinstance(runs[0], ConditionalVAE)
    assert len(runs[0].training_.losses) == ConditionalVAEConfig().quick().training.max_steps
    first, second = (run.predict_named(data.fmri) for run in runs)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
