"""How a ContrastiveEncoder trains through the one loop (fmri_encoders.training): its modules as one model,
symmetric InfoNCE as the loss, per-subject batches, and MixCo / voxel noise as the batch augmentation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from fmri_encoders.contrastive.fmri_encoder import FmriEncoder
from fmri_encoders.contrastive.losses import LogitScale, group_targets, info_nce, mixco
from fmri_encoders.training import (
    Batch,
    BatchNoise,
    EpochSampler,
    FixedBatchTraining,
    LossFn,
    TrainingConfig,
    train,
)

# A fixed number of epochs at a constant rate: ~100 trials leave nothing to spare for a validation split.
# max_steps is set from the encoder's epochs; the batch is InfoNCE's negatives, so a run's micro-batch
# setting leaves it.
DEFAULT_TRAINING = FixedBatchTraining(
    batch_size=32,
    learning_rate=1e-3,
    weight_decay=0.05,
    decay_matrices_only=True,
    schedule="constant",
    warmup_steps=0,
    grad_clip=1.0,
    ema_decay=None,
)


@dataclass(frozen=True)
class Augmentation:
    """What each training batch gets: soft targets over its stimulus groups, then, when switched on,
    Gaussian voxel noise (noise_std in z-scored voxel units) and MixCo (a mixco_prob share of the trials
    mixed with a partner, weight ~ Beta(mixco_alpha, mixco_alpha))."""

    mixco: bool = False
    mixco_alpha: float = 0.15
    mixco_prob: float = 0.5
    voxel_noise: bool = False
    noise_std: float = 0.1

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        voxels, targets = batch["voxels"], group_targets(batch["groups"])
        if self.voxel_noise:
            voxels = voxels + self.noise_std * torch.randn(voxels.shape, generator=generator)
        if self.mixco:
            voxels, targets = mixco(voxels, targets, self.mixco_alpha, self.mixco_prob)
        return batch | {"voxels": voxels, "targets": targets}


class ContrastivePair(nn.Module):
    """Everything that learns, as one module whose forward gives both embeddings and the temperature: the
    fMRI encoder, the learned temperature and, unless it is frozen (then `images` are its embeddings
    already), the image encoder."""

    def __init__(
        self, fmri_encoder: FmriEncoder, image_encoder: nn.Module | None, temperature: float
    ) -> None:
        super().__init__()
        self.fmri_encoder = fmri_encoder
        self.image_encoder = image_encoder
        self.scale = LogitScale(temperature)

    def forward(
        self, voxels: torch.Tensor, images: torch.Tensor, subject: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fMRI embeddings, image embeddings, logit scale)."""
        brain = self.fmri_encoder(voxels, subject).embedding
        image = images if self.image_encoder is None else self.image_encoder(images)
        return brain, image, self.scale()


def contrastive_loss(subjects: list[str]) -> LossFn:
    """InfoNCE of a batch from one subject (`batch["pool"]` indexes `subjects`)."""

    def loss(model: nn.Module, batch: Batch, _: BatchNoise) -> torch.Tensor:
        brain, image, scale = model(batch["voxels"], batch["images"], subjects[int(batch["pool"])])
        return info_nce(brain, image, scale, batch["targets"])

    return loss


def train_contrastive(
    pair: ContrastivePair,
    trials: Mapping[str, Mapping[str, torch.Tensor]],
    epochs: int,
    augmentation: Augmentation,
    config: TrainingConfig,
) -> list[float]:
    """Train in place for `epochs` passes over every subject's trials; returns each epoch's mean loss.

    trials: {subject: {"voxels": [n, v] z-scored, "images": [n, H, W] pixels or [n, d] frozen embeddings,
    "groups": [n] stimulus groups}}. The caller seeds torch before building the modules, so that one seed
    fixes initialisation, batch order, dropout and augmentation alike.
    """
    subjects = list(trials)
    sampler = EpochSampler(
        [trials[name] for name in subjects], config.batch_size, seed=config.seed, augment=augmentation
    )
    # an epoch budget counts batches: gradient accumulation (for large models' memory) would multiply it
    config = replace(config, max_steps=epochs * sampler.steps_per_epoch, gradient_accumulation_steps=1)
    result = train(
        pair,
        contrastive_loss(subjects),
        sampler,
        config,
        description="contrastive",
        shard_batches=False,  # InfoNCE's negatives are the whole batch, which every process then computes
        unused_parameters=len(subjects) > 1,  # a batch is one subject's: the others' adapters rest
    )
    per_epoch = np.reshape(result.losses, (epochs, sampler.steps_per_epoch)).mean(axis=1)
    return [float(loss) for loss in per_epoch]
