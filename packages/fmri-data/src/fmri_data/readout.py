"""Reading a reconstruction out in the stimulus design's own terms: the posterior mean of binary patches.

Miyawaki-style stimuli are K x K binary patches rendered bilinearly, but a sampler's posterior mean (like any
pixel estimate from fMRI) lies between the two patch values, which costs structural similarity. Seen as
one number per patch (its least-squares value under the bilinear rendering), an estimate of an off patch
scatters around one mean and of an on patch around another, with one spread. With a patch on with prior
probability p, the posterior probability that it is on is then a sigmoid of that value (two Gaussian classes
sharing a variance), and rendering those probabilities gives the posterior mean image. `PatchReadout.fit`
estimates the two means and the spread from a method's posterior-mean reconstructions of validation stimuli
held out of the training trials and p from the training images, so no test trial sets any of them; it reads
out posterior means only (a single sample scatters more widely than the means it was fitted on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np

from fmri_data.corpora import detect_patch_grid
from fmri_data.corpora.builtin import render_bilinear
from fmri_data.corpora.resize import bilinear_weights
from fmri_data.errors import DataError

READOUTS = ("pixels", "patches")
"""pixels: the reconstruction as sampled; patches: the posterior mean of the grid's binary patches."""
NO_DESIGN = "the training images are not K x K binary patches"
ONE_VALUE = "the held-out images hold only one patch value, so the on and off spreads cannot be told apart"
FILL_LIMIT = 0.01  # keeps the prior's log-odds finite when the training images are all on or all off


def patch_values(images: np.ndarray, grid: int) -> np.ndarray:
    """[n, H, H] -> [n, grid, grid]: the patch values whose bilinear rendering is closest to each image
    (least squares; the rendering is separable, so its pseudo-inverse is too)."""
    unrender = np.linalg.pinv(bilinear_weights(np.shape(images)[-1], grid))
    return unrender @ np.asarray(images, dtype=np.float64) @ unrender.T


@dataclass(frozen=True)
class PatchReadout:
    """Posterior mean of K x K binary patches given a reconstruction's patch values.

    off_mean, on_mean: mean patch value of off and on patches in validation reconstructions; noise: their
    pooled variance; fill: the fraction of on patches in the training images.
    """

    grid: int
    off_mean: float
    on_mean: float
    noise: float
    fill: float

    @classmethod
    def fit(cls, train_images: np.ndarray, reconstructed: np.ndarray, truth: np.ndarray) -> Self:
        """From the training images (their grid and fill) and reconstructions of held-out `truth` images."""
        grid = detect_patch_grid(train_images)
        if grid is None:
            raise DataError(f"readout 'patches': {NO_DESIGN}; read out pixels instead")
        on = patch_values(truth, grid) > 0.5
        if on.all() or not on.any():
            raise DataError(f"readout 'patches': {ONE_VALUE}; read out pixels instead")
        values = patch_values(reconstructed, grid)
        off_mean, on_mean = float(values[~on].mean()), float(values[on].mean())
        residuals = np.where(on, values - on_mean, values - off_mean)
        fill = float(np.clip((patch_values(train_images, grid) > 0.5).mean(), FILL_LIMIT, 1 - FILL_LIMIT))
        return cls(grid, off_mean, on_mean, max(float(residuals.var()), 1e-6), fill)

    @classmethod
    def fit_out_of_fold(cls, train_images: np.ndarray, held_out: np.ndarray) -> Self:
        """From a decoder's out-of-fold reconstructions of the training images themselves (each predicted
        without its stimulus; clipped to [0, 1] as its outputs are): what a method fits on its training
        trials alone, so no test trial sets the readout."""
        return cls.fit(train_images, np.clip(held_out, 0, 1), train_images)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """[n, H, H] reconstructions in [0, 1] -> their patch posterior means, rendered at the same size."""
        images = np.asarray(images)
        log_odds = self.evidence(images) + np.log(self.fill / (1 - self.fill))
        on_probability = 1 / (1 + np.exp(-np.clip(log_odds, -60, 60)))
        return render_bilinear(on_probability, images.shape[-1])

    def evidence(self, images: np.ndarray) -> np.ndarray:
        """[n, H, H] -> [n, grid, grid]: each patch's log-likelihood ratio (on vs off) given the
        reconstruction, without the prior; what another model of the same patches (a posterior sampler) can
        multiply in."""
        values = patch_values(images, self.grid)
        return (self.on_mean - self.off_mean) / self.noise * (values - (self.on_mean + self.off_mean) / 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
