"""The mean-training-image baseline: what a decoder scores by ignoring the brain entirely."""

from __future__ import annotations

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.methods.base import ReconstructionMethod


class MeanImage(ReconstructionMethod):
    """Predict the average training image for every trial."""

    name = "mean"
    colour = True

    def fit(self, train: PairedDataset) -> MeanImage:
        self.mean_image_ = train.images.mean(axis=0)
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_image_, (len(fmri), *self.mean_image_.shape)).copy()
