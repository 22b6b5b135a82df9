"""The `ridge` method: pixels decoded linearly from voxels; `ridge-patches`: the same read out as the design's
binary patches."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmri_data.corpora import detect_patch_grid
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import ReconstructionMethod
from fmri_data.readout import NO_DESIGN, PatchReadout
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import ridge_backend

INNER_FOLDS = 5
MIN_STIMULI = 3
"""ridge-patches' least: each out-of-fold ridge, one stimulus held out, still chooses its alpha on two."""


class RidgePixels(ReconstructionMethod):
    """Linear decoding of every pixel, clipped to [0, 1].

    One alpha shared by all pixels, chosen by stimulus-grouped 5-fold CV inside the training trials: with
    ~100 trials a per-pixel choice follows CV noise, and measured on digit69 and Miyawaki it scored lower
    on every split (e.g. Miyawaki loso pcc 0.860 per-pixel vs 0.880 shared). Runs on the GPU (himalaya's
    torch_cuda backend) when the settings' device resolves to CUDA.
    """

    name = "ridge"
    colour = True

    def fit(self, train: PairedDataset) -> RidgePixels:
        if train.n_stimuli < 2:
            raise DataError(f"ridge needs at least 2 distinct training stimuli, got {train.n_stimuli}")
        backend = ridge_backend(self.settings.device)
        self.image_shape_ = train.images.shape[1:]
        self.encoder_ = RidgeEncoder(
            per_target=False, cv=min(INNER_FOLDS, train.n_stimuli), backend=backend
        ).fit(train.fmri, train.images.reshape(train.n_trials, -1), groups=train.stimulus_id)
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        pixels = self.encoder_.predict(fmri)
        return np.clip(pixels, 0.0, 1.0).reshape(len(fmri), *self.image_shape_)


class RidgePatches(RidgePixels):
    """Ridge's image read out as the posterior mean of the stimuli's K x K binary patches (fmri_data.readout).

    The baseline for every route that reads its images out as patches (`--choose readout=...`), which
    plain ridge is not: on Miyawaki the readout alone lifts ridge's SSIM by about 0.08. The readout is
    fitted on ridge's stimulus-grouped out-of-fold images of the training trials (noisy as test-time images
    are), so no test trial sets it. Refuses stimuli without the patch design.
    """

    name = "ridge-patches"
    colour = False

    def check_stimuli(self, stimuli: PairedDataset) -> None:
        if detect_patch_grid(stimuli.images) is None:
            raise DataError(f"ridge-patches needs K x K binary-patch stimuli, and {NO_DESIGN}; use ridge")

    def fit(self, train: PairedDataset) -> RidgePatches:
        self.check_stimuli(train)
        if train.n_stimuli < MIN_STIMULI:
            raise DataError(
                f"ridge-patches needs at least {MIN_STIMULI} distinct training stimuli, got {train.n_stimuli}"
            )
        self.image_shape_ = train.images.shape[1:]
        held_out, self.encoder_ = out_of_fold_ridge(
            train.fmri,
            train.images,
            train.stimulus_id,
            k=INNER_FOLDS,
            seed=self.settings.seed,
            per_target=False,
            backend=ridge_backend(self.settings.device),
        )
        self.readout_ = PatchReadout.fit_out_of_fold(train.images, held_out)
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.readout_(super().predict(fmri)).astype(np.float32)

    def records(self) -> dict[str, Any]:
        return {"readout": self.readout_.to_dict()}
