"""The one training loop of every torch model here (diffusion, cVAE, voxel VAE, contrastive, MLP)."""

from fmri_encoders.training.curve import loss_curves
from fmri_encoders.training.loop import (
    LossFn,
    TrainingConfig,
    TrainingDivergedError,
    TrainingResult,
    check_tracker,
    train,
    training_for,
)
from fmri_encoders.training.sampling import Batch, BatchSampler, EpochSampler, Sampler

__all__ = [
    "Batch",
    "BatchSampler",
    "EpochSampler",
    "LossFn",
    "Sampler",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingResult",
    "check_tracker",
    "loss_curves",
    "train",
    "training_for",
]
