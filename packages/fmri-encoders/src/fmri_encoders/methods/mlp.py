"""The `mlp` method: pixels regressed non-linearly from voxels, the earlier projects' simple baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from accelerate.utils import set_seed
from torch import nn

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_encoders.training import (
    Batch,
    BatchNoise,
    EpochSampler,
    FixedBatchTraining,
    TrainingConfig,
    train,
    training_for,
)

# Epochs at a constant rate, their number chosen by early stopping; no decay on biases, which would pull
# the output bias (the mean training image) towards grey. max_steps is set from the epochs, so a run's
# micro-batch setting leaves the batch.
DEFAULT_TRAINING = FixedBatchTraining(
    batch_size=32,
    learning_rate=1e-3,
    weight_decay=1e-2,
    decay_matrices_only=True,
    schedule="constant",
    warmup_steps=0,
    grad_clip=0.0,
    ema_decay=None,
)


@dataclass
class PixelMlpConfig:
    """n_layers hidden layers of `hidden` units, each followed by GELU and dropout."""

    n_inputs: int
    n_outputs: int
    hidden: int = 512
    n_layers: int = 1
    dropout: float = 0.3


class PixelMlp(nn.Module):
    """Voxels -> pixels in (0, 1) through a sigmoid, so predictions never need clipping."""

    def __init__(self, config: PixelMlpConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.n_inputs
        for _ in range(config.n_layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, config.n_outputs)

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.body(voxels)))


class MlpPixels(ReconstructionMethod):
    """An MLP from voxels to every pixel, trained with MSE and AdamW weight decay through the one loop.

    The number of epochs is chosen by early stopping (after `patience` epochs without a better validation
    MSE) on a stimulus-grouped validation split of the training trials (val_fraction of the stimuli, all
    their repeats); the model is then retrained on every training trial for that many epochs, so no trial
    is wasted on validation in the final model. Quick mode caps training at quick_epochs.
    training: how the loop optimises (batch size, learning rate, ...); seed, device and progress come from
    the run's settings, max_steps from the epochs.
    """

    name = "mlp"
    colour = True

    def __init__(
        self,
        settings: MethodSettings | None = None,
        *,
        hidden: int = 512,
        n_layers: int = 1,
        dropout: float = 0.3,
        training: TrainingConfig = DEFAULT_TRAINING,
        max_epochs: int = 500,
        patience: int = 30,
        val_fraction: float = 0.15,
        quick_epochs: int = 20,
    ) -> None:
        super().__init__(settings)
        self.hidden = hidden
        self.n_layers = n_layers
        self.dropout = dropout
        self.training = training
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.quick_epochs = quick_epochs

    def fit(self, train: PairedDataset) -> MlpPixels:
        self.image_shape_ = train.images.shape[1:]
        self.voxel_mean_ = train.fmri.mean(axis=0)
        std = train.fmri.std(axis=0)
        self.voxel_std_ = np.where(std > 0, std, 1.0).astype(np.float32)
        x = self._standardise(train.fmri)
        y = train.images.reshape(train.n_trials, -1)
        max_epochs = self.quick_epochs if self.settings.quick else self.max_epochs
        val = _validation_trials(train.stimulus_id, self.val_fraction, self.settings.seed)
        if val.any():
            _, self.best_epochs_ = self._train(x[~val], y[~val], max_epochs, (x[val], y[val]))
        else:  # too few stimuli to hold any out
            self.best_epochs_ = max_epochs
        self.model_, _ = self._train(x, y, self.best_epochs_)
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        device = next(self.model_.parameters()).device
        with torch.no_grad():
            pixels = self.model_(torch.from_numpy(self._standardise(fmri)).to(device)).float().cpu().numpy()
        return np.clip(pixels, 0.0, 1.0).reshape(len(fmri), *self.image_shape_).astype(np.float32)

    def _standardise(self, fmri: np.ndarray) -> np.ndarray:
        return ((np.asarray(fmri, dtype=np.float32) - self.voxel_mean_) / self.voxel_std_).astype(np.float32)

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int,
        val: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[PixelMlp, int]:
        """Train a fresh seeded model; with `val`, stop after `patience` epochs without a better val MSE.

        Returns the model and the epoch count that gave the best validation loss (`epochs` without val).
        """
        set_seed(self.settings.seed)
        model = PixelMlp(PixelMlpConfig(x.shape[1], y.shape[1], self.hidden, self.n_layers, self.dropout))
        mean_pixel = np.clip(y.mean(axis=0), 0.01, 0.99)
        with torch.no_grad():  # start from the mean training image rather than from grey
            model.out.bias.copy_(torch.from_numpy(np.log(mean_pixel / (1 - mean_pixel))))
        # an epoch budget counts batches: gradient accumulation (for large models' memory) would multiply it
        training = replace(training_for(self.training, self.settings), gradient_accumulation_steps=1)
        sampler = EpochSampler(
            {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, training.batch_size, seed=training.seed
        )
        per_epoch = sampler.steps_per_epoch
        result = train(
            model,
            _mse_loss,
            sampler,
            replace(training, max_steps=epochs * per_epoch),
            description="mlp" if val is None else "mlp (choosing epochs)",
            validate=None if val is None else _validation_mse(*val),
            validate_every=per_epoch,
            patience=None if val is None else self.patience,
        )
        return model, epochs if result.best_step is None else result.best_step // per_epoch


def _mse_loss(model: nn.Module, batch: Batch, _: BatchNoise) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch["x"]), batch["y"])


def _validation_mse(x: np.ndarray, y: np.ndarray) -> Callable[[nn.Module], float]:
    """The loop's `validate`: pixel MSE on the held-out stimuli (lower is better)."""
    xv, yv = torch.from_numpy(x), torch.from_numpy(y)

    def mse(model: nn.Module) -> float:
        device = next(model.parameters()).device
        return nn.functional.mse_loss(model(xv.to(device)), yv.to(device)).item()

    return mse


def _validation_trials(stimulus_id: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask holding out `fraction` of the stimuli with all their repeats (none if < 5 stimuli)."""
    stimuli = np.unique(stimulus_id)
    n_val = round(fraction * len(stimuli))
    if len(stimuli) < 5 or n_val == 0:
        return np.zeros(len(stimulus_id), dtype=bool)
    held = np.random.default_rng(seed).choice(stimuli, size=n_val, replace=False)
    return np.isin(stimulus_id, held)
