"""A voxel-wise encoding model, image -> fMRI, and the Gaussian likelihood of measured voxels it defines.

Decoding asks which image best explains a measured pattern; Bayesian reconstruction (Naselaris et al. 2009)
answers it as prior x likelihood, the likelihood coming from an encoding model. Here the encoding model is
either ridge from an image's pixels to each voxel (himalaya, alpha chosen per voxel) or, where the stimuli
are K x K binary patches (Miyawaki's design), a population receptive field per voxel (fmri_encoders.prf):
ridge weights lie in the span of the few distinct training images, so ridge predicts an unlike image from
its projection onto them, while a pRF judges any pattern of patches. Both are linear in the pixels (a pRF
reads the patches' least-squares values), so the likelihood below serves both. Stimulus-grouped out-of-fold
predictions on the training trials give each voxel's noise variance (mean squared residual) and its encoding
accuracy r; only the `n_voxels` best-predicted voxels enter the likelihood, because most voxels of a small
data set are not predictable from the image at all and would only add noise. The same residuals' correlations
between voxels (fmri_encoders.noise) give the likelihood's correlated noise model, asked for by name.

`likelihood()` returns a torch module, so a diffusion sampler can differentiate the negative log-likelihood
with respect to its predicted clean image (fmri_diffusion's likelihood guidance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmri_data.corpora import detect_patch_grid
from fmri_data.corpora.resize import bilinear_weights
from fmri_data.errors import DataError
from fmri_data.readout import patch_values
from fmri_data.splits import group_kfold
from fmri_encoders.noise import check_noise_models, correlated_noise_precision
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors
from fmri_encoders.prf import ReceptiveFields

ENCODINGS = ("auto", "ridge", "prf")
"""ridge: from every pixel; prf: a receptive field per voxel on the stimuli's K x K binary-patch grid (refused
without one); auto: prf where the training images are such a grid, ridge otherwise."""
_SAVED_AS = "encoding"
_MIN_VARIANCE = 1e-6
_FOLDS = 5


class EncodingModel:
    """fit(images [n, H, W], fmri [n, V], groups) -> predict(images) for the `n_voxels` best voxels.

    kind: one of ENCODINGS; `kind_` says which model the fit used.
    """

    def __init__(self, n_voxels: int = 500, kind: str = "auto") -> None:
        if n_voxels < 1:
            raise DataError(f"n_voxels must be at least 1, got {n_voxels}")
        if kind not in ENCODINGS:
            raise DataError(f"unknown encoding model {kind!r}; choose one of {', '.join(ENCODINGS)}")
        self.n_voxels = n_voxels
        self.kind = kind

    def fit(
        self, images: np.ndarray, fmri: np.ndarray, groups: np.ndarray, *, seed: int = 0
    ) -> EncodingModel:
        """Pixels (or pRFs) -> voxels; out-of-fold residuals give r and the noise variance of every voxel,
        and the correlated noise model's precision matrix of the kept voxels."""
        images, fmri = np.asarray(images, np.float32), np.asarray(fmri, np.float32)
        if len(images) != len(fmri):
            raise DataError(f"{len(images)} images but {len(fmri)} fMRI patterns")
        square = images.ndim == 3 and images.shape[1] == images.shape[2]
        grid = detect_patch_grid(images) if self.kind != "ridge" and square else None
        if self.kind == "prf" and grid is None:
            raise DataError("encoding model 'prf' needs K x K binary-patch stimuli; use 'ridge' or 'auto'")
        groups = np.asarray(groups)
        if grid is None:
            pixels = images.reshape(len(images), -1)
            held_out, ridge = out_of_fold_ridge(pixels, fmri, groups, per_target=True, seed=seed)
            coef, intercept = ridge.coef_, ridge.intercept_
        else:
            held_out, coef, intercept = _receptive_fields(images, fmri, groups, grid, seed)
        accuracy = _columnwise_correlation(held_out, fmri)
        keep = np.sort(np.argsort(-np.nan_to_num(accuracy, nan=-1.0), kind="stable")[: self.n_voxels])
        residual = fmri[:, keep] - held_out[:, keep]
        self.kind_ = "ridge" if grid is None else f"prf on a {grid}x{grid} patch grid"
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        self.voxels_ = keep.astype(np.int64)
        self.coef_ = np.asarray(coef)[:, keep].astype(np.float32)
        self.intercept_ = np.asarray(intercept)[keep].astype(np.float32)
        self.noise_variance_ = np.maximum((residual**2).mean(axis=0), _MIN_VARIANCE).astype(np.float32)
        self.noise_precision_ = correlated_noise_precision(residual, self.noise_variance_).astype(np.float32)
        self.accuracy_ = accuracy[keep].astype(np.float32)
        return self

    def predict(self, images: np.ndarray) -> np.ndarray:
        """[n, n_voxels] predicted responses of the kept voxels."""
        self._check_fitted()
        pixels = np.asarray(images, np.float32).reshape(len(images), -1)
        if pixels.shape[1] != self.coef_.shape[0]:
            raise DataError(
                f"images have {pixels.shape[1]} pixels; the model was fitted on {self.coef_.shape[0]}"
            )
        return pixels @ self.coef_ + self.intercept_

    def measured(self, fmri: np.ndarray) -> np.ndarray:
        """The kept voxels of measured patterns [n, V] -> [n, n_voxels], what the likelihood compares with."""
        self._check_fitted()
        return np.asarray(fmri, np.float32)[:, self.voxels_]

    def likelihood(self, noise: str = "independent") -> GaussianLikelihood:
        """The likelihood of the kept voxels under a noise model of fmri_encoders.noise.NOISE_MODELS."""
        self.check_noise(noise)
        if noise == "independent":
            return GaussianLikelihood(self.coef_, self.intercept_, self.noise_variance_)
        return GaussianLikelihood(self.coef_, self.intercept_, self.noise_variance_, self.noise_precision_)

    def offers(self, noise: str) -> bool:
        """Whether this fit gives the noise model (one of NOISE_MODELS): all but correlated noise from an
        encoding model saved before it existed."""
        self._check_fitted()
        check_noise_models((noise,), "encoding_noise")
        return noise == "independent" or hasattr(self, "noise_precision_")

    def check_noise(self, noise: str) -> None:
        """Refuse, in one line, a noise model this fit does not offer (what a loaded method checks before
        it samples)."""
        if not self.offers(noise):
            raise DataError(
                "this encoding model was saved before its correlated noise model existed; fit it again, "
                "or set encoding_noise to independent"
            )

    def describe(self) -> str:
        self._check_fitted()
        return (
            f"encoding model: {self.kind_} -> {len(self.voxels_)} voxels (best out-of-fold r, "
            f"mean {float(self.accuracy_.mean()):.2f})"
        )

    # -------------------------------------------------------------------- io
    def save(self, folder: str | Path) -> None:
        self._check_fitted()
        settings = {
            "n_voxels": self.n_voxels,
            "kind": self.kind,
            "fitted_kind": self.kind_,
            "image_shape": list(self.image_shape_),
        }
        arrays = {name: getattr(self, name) for name in _FITTED}
        if hasattr(self, "noise_precision_"):  # a fit saved before the correlated model has none
            arrays["noise_precision_"] = self.noise_precision_
        save_settings_and_tensors(folder, _SAVED_AS, settings, arrays)

    @classmethod
    def load(cls, folder: str | Path) -> EncodingModel:
        settings, arrays = load_settings_and_tensors(folder, _SAVED_AS)
        model = cls(settings["n_voxels"], settings.get("kind", "ridge"))
        model.kind_ = settings.get("fitted_kind", "ridge")
        model.image_shape_ = tuple(settings["image_shape"])
        for name, value in arrays.items():
            setattr(model, name, value.numpy())
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this EncodingModel is not fitted yet; call fit(images, fmri, groups) first")


_FITTED = ("voxels_", "coef_", "intercept_", "noise_variance_", "accuracy_")


class GaussianLikelihood(nn.Module):
    """Negative log-likelihood (up to a constant) of measured voxels given images, differentiable in the
    images: 0.5 * r^T P r with r = y - f(image), one value per image. P is diag(1 / sigma_v^2) (independent
    noise) or a given `noise_precision` matrix [V, V] (symmetric; correlated noise)."""

    def __init__(
        self,
        coef: np.ndarray,
        intercept: np.ndarray,
        noise_variance: np.ndarray,
        noise_precision: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("coef", torch.as_tensor(coef, dtype=torch.float32))
        self.register_buffer("intercept", torch.as_tensor(intercept, dtype=torch.float32))
        precision = (
            1.0 / torch.as_tensor(noise_variance, dtype=torch.float32)
            if noise_precision is None
            else torch.as_tensor(noise_precision, dtype=torch.float32)
        )
        self.register_buffer("precision", precision)

    def forward(self, images: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
        """images [B, H, W] in [0, 1], measured [B, n_voxels] -> [B]."""
        dtype = self.coef.dtype
        residual = measured.to(dtype) - (images.flatten(1).to(dtype) @ self.coef + self.intercept)
        if self.precision.dim() == 1:
            return 0.5 * (residual**2 * self.precision).sum(dim=1)
        return 0.5 * ((residual @ self.precision) * residual).sum(dim=1)


def _receptive_fields(
    images: np.ndarray, fmri: np.ndarray, groups: np.ndarray, grid: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold pRF predictions [n, V] (stimulus-grouped folds) and, from the fit on all trials, the
    pixel-space weights [H * W, V] and intercepts [V]: a pRF sees the patches' least-squares values, a
    linear function of the pixels, so the weights compose the two."""
    patches = patch_values(images, grid)
    held_out = np.empty(fmri.shape, dtype=np.float64)
    for train, test in group_kfold(groups, min(_FOLDS, np.unique(groups).size), seed=seed):
        held_out[test] = ReceptiveFields.fit(patches[train], fmri[train]).predict(patches[test])
    fields = ReceptiveFields.fit(patches, fmri)
    unrender = np.linalg.pinv(bilinear_weights(images.shape[-1], grid))
    pixels_to_patches = np.kron(unrender, unrender)  # row-major: patch (i, j) <- pixel (a, b)
    return held_out, pixels_to_patches.T @ fields.weights.T, fields.offsets


def _columnwise_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denominator = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=0) / denominator, np.nan)
