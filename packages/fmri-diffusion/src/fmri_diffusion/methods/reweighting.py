"""Likelihood guidance for a method that samples in one pass (no sampling steps to steer): importance
weights.

A sampler without steps (the cvae decodes a prior draw in one pass) has no steps for a likelihood's
gradient to steer (methods.langevin moves its latents instead, at a cost of many passes), but its samples
are draws from p(image | first-stage decoding), a proposal, and the encoding model's
likelihood p(measured voxels | image) can weigh them: the weighted mean estimates the mean of
p(image | decoding) x likelihood^weight (self-normalised importance sampling). The weight is a temper:
the decoding already carries the same fMRI, so the full likelihood would count it twice, and neighbouring
voxels share noise that the likelihood takes as independent (unless `encoding_noise` is "correlated",
fmri_encoders.noise); below 1 it also keeps the weights from
collapsing onto one sample. It is chosen on validation stimuli like the diffusion routes' guidance weight.
A route with sampling steps may weigh its samples the same way after guidance (`sample_weight`,
methods.base).
"""

from __future__ import annotations

import numpy as np
import torch

from fmri_encoders.encoding import EncodingModel


def importance_weights(
    samples: np.ndarray,
    fmri: np.ndarray,
    encoding: EncodingModel,
    weight: float,
    noise: str = "independent",
) -> np.ndarray:
    """samples [K, n, H, W] of n trials with fMRI [n, V] -> normalised weights [K, n] (each column sums to
    1): softmax over the K samples of -weight x the negative log-likelihood of the trial's voxels under
    the `noise` model (fmri_encoders.noise)."""
    likelihood = encoding.likelihood(noise)
    measured = torch.from_numpy(encoding.measured(fmri))
    with torch.no_grad():
        nll = torch.stack([likelihood(torch.from_numpy(images), measured) for images in samples])
    return torch.softmax(-weight * nll.double(), dim=0).numpy()


def weighted_rows(samples: np.ndarray, weights: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The weighted posterior mean [n, H, W] and one sample per trial drawn by its weights [n, H, W]."""
    mean = np.einsum("kn,knhw->nhw", weights, samples).astype(samples.dtype)
    rng = np.random.default_rng(seed)
    drawn = np.array([rng.choice(len(weights), p=column) for column in weights.T])
    return mean, samples[drawn, np.arange(samples.shape[1])]
