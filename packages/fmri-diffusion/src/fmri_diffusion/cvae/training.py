"""Fitting a ConditionalVaeNet to (image, condition) pairs: AdamW, a fixed epoch budget, joint shifts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from fmri_diffusion.cvae.augment import shift_jointly
from fmri_diffusion.cvae.model import ConditionalVaeNet, negative_elbo


@dataclass
class CvaeTraining:
    """epochs: full passes over the trials, each in batches of about batch_size (steps matter more than
    samples on tiny data, so batches are large). beta: weight of the KL term. max_shift: joint shift in px.
    """

    epochs: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    beta: float = 1.0
    max_shift: int = 2


def train_cvae(
    model: ConditionalVaeNet,
    images: np.ndarray,
    conditions: np.ndarray,
    training: CvaeTraining,
    accelerator: Accelerator,
    *,
    progress: bool = True,
) -> list[float]:
    """Train `model` in place on images and conditions [n, H, W]; returns the mean loss of every epoch.

    Seed torch (accelerate.utils.set_seed) before building the model: shuffling, shifts and the
    reparameterisation noise all draw from torch's global RNG.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)[:, None]).to(accelerator.device)
    c = torch.from_numpy(np.ascontiguousarray(conditions, dtype=np.float32)[:, None]).to(accelerator.device)
    n_batches = max(1, round(len(x) / training.batch_size))
    losses = []
    model.train()
    for _ in tqdm(range(training.epochs), desc="cvae", leave=False, disable=None if progress else True):
        total = 0.0
        for index in torch.randperm(len(x)).tensor_split(n_batches):
            index = index.to(accelerator.device)
            x_batch, c_batch = shift_jointly(x[index], c[index], training.max_shift)
            loss, _, _ = negative_elbo(model, x_batch, c_batch, training.beta)
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / len(x))
    model.eval()
    return losses
