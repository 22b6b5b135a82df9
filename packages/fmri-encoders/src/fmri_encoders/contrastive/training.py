"""The contrastive training loop: mini-batches per subject, optional augmentation, AdamW, via accelerate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fmri_encoders.contrastive.fmri_encoder import FmriEncoder
from fmri_encoders.contrastive.losses import LogitScale, group_targets, info_nce, mixco
from fmri_encoders.runtime import make_accelerator


@dataclass
class TrainingConfig:
    """How a ContrastiveEncoder is trained.

    epochs: full passes over the training trials (a fixed budget: ~100 trials leave nothing to spare for a
        validation split). mixco / voxel_noise switch the augmentations on; mixco_alpha is the Beta(a, a)
        of the mixing weight, mixco_prob the share of samples mixed, noise_std in z-scored voxel units.
    device: "auto", "cpu" or "cuda"; mixed_precision: "no", "fp16" or "bf16" (passed to accelerate).
    progress: a tqdm bar with the epoch loss, shown when stderr is a terminal.
    """

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    init_temperature: float = 0.07
    mixco: bool = False
    mixco_alpha: float = 0.15
    mixco_prob: float = 0.5
    voxel_noise: bool = False
    noise_std: float = 0.1
    grad_clip: float = 1.0
    device: str = "auto"
    mixed_precision: str = "no"
    seed: int = 0
    progress: bool = True


@dataclass
class SubjectData:
    """One subject's training trials: z-scored voxels, image-side inputs and stimulus groups."""

    voxels: torch.Tensor  # [n, v]
    images: torch.Tensor  # [n, H, W] pixels, or [n, d] fixed embeddings when the image side is frozen
    groups: torch.Tensor  # [n]


def train_contrastive(
    fmri_encoder: FmriEncoder,
    image_encoder: nn.Module | None,
    data: Mapping[str, SubjectData],
    config: TrainingConfig,
) -> tuple[float, list[float]]:
    """Train in place; returns the final logit scale and the mean loss of every epoch.

    image_encoder None: `images` already hold the frozen image embeddings, and only the fMRI side learns.
    The caller seeds torch (accelerate's set_seed) before building the modules, so that one seed fixes
    initialisation, batch order, dropout and augmentation alike.
    """
    accelerator = make_accelerator(config.device, config.mixed_precision)
    scale = LogitScale(config.init_temperature)
    modules = [fmri_encoder, scale] + ([image_encoder] if image_encoder is not None else [])
    parameters = [p for module in modules for p in module.parameters()]
    # decay weight matrices only: shrinking biases, norm gains or the temperature has no regularising use.
    groups = [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    *modules, optimizer = accelerator.prepare(*modules, optimizer)
    fmri_encoder, scale, *rest = modules
    image_encoder = rest[0] if rest else None
    data = {name: _to(subject, accelerator.device) for name, subject in data.items()}
    rng = np.random.default_rng(config.seed)
    history: list[float] = []
    for module in modules:
        module.train()
    # disable=None: a bar on a terminal only, never in captured logs
    bar = tqdm(
        range(config.epochs), desc="contrastive", disable=None if config.progress else True, leave=False
    )
    for _ in bar:
        losses = []
        for name, index in _batches(data, config.batch_size, rng):
            subject = data[name]
            voxels, targets = subject.voxels[index], group_targets(subject.groups[index])
            if config.voxel_noise:
                voxels = voxels + config.noise_std * torch.randn_like(voxels)
            if config.mixco:
                voxels, targets = mixco(voxels, targets, config.mixco_alpha, config.mixco_prob)
            images = subject.images[index]
            with accelerator.autocast():
                brain = fmri_encoder(voxels, name).embedding
                image = images if image_encoder is None else image_encoder(images)
                loss = info_nce(brain, image, scale(), targets)
            optimizer.zero_grad()
            accelerator.backward(loss)
            if config.grad_clip:
                accelerator.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    for module in modules:
        module.eval()
    return float(scale().item()), history


def _batches(
    data: Mapping[str, SubjectData], batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[str, torch.Tensor]]:
    """Shuffled mini-batches, each from one subject (voxel counts differ), in shuffled order.

    Batches are balanced in size (never a lone trailing sample): InfoNCE needs negatives in every batch.
    """
    batches = []
    for name, subject in data.items():
        n = len(subject.voxels)
        order = rng.permutation(n)
        batches += [(name, chunk) for chunk in np.array_split(order, max(1, round(n / batch_size)))]
    for i in rng.permutation(len(batches)):
        name, chunk = batches[i]
        yield name, torch.as_tensor(chunk, device=data[name].voxels.device)


def _to(subject: SubjectData, device: torch.device) -> SubjectData:
    return SubjectData(subject.voxels.to(device), subject.images.to(device), subject.groups.to(device))
