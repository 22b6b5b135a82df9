"""The one training loop of every torch model here (diffusion, cVAE, voxel VAE, contrastive, MLP)."""

from fmri_encoders.training.curve import loss_curves
from fmri_encoders.training.loop import (
    Batch,
    BatchSampler,
    LossFn,
    TrainingConfig,
    TrainingDivergedError,
    TrainingResult,
    check_tracker,
    train,
    training_for,
)

__all__ = [
    "Batch",
    "BatchSampler",
    "LossFn",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingResult",
    "check_tracker",
    "loss_curves",
    "train",
    "training_for",
]
