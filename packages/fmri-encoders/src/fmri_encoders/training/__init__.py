"""The one training loop of every torch model here (diffusion, cVAE, voxel VAE, contrastive, MLP)."""

from fmri_encoders.training.curve import loss_curves
from fmri_encoders.training.loop import (
    FixedBatchTraining,
    LossFn,
    TrainingConfig,
    TrainingDivergedError,
    TrainingResult,
    check_tracker,
    numerics_for,
    scaled_steps,
    train,
    training_for,
)
from fmri_encoders.training.sampling import Batch, BatchSampler, EpochSampler, Sampler
from fmri_encoders.training.sharding import BatchNoise, Shard

__all__ = [
    "Batch",
    "BatchNoise",
    "BatchSampler",
    "EpochSampler",
    "FixedBatchTraining",
    "LossFn",
    "Sampler",
    "Shard",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingResult",
    "check_tracker",
    "loss_curves",
    "numerics_for",
    "scaled_steps",
    "train",
    "training_for",
]
