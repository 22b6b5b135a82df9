"""The `retrieval` method: show the training image whose embedding lies nearest to the decoded fMRI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_encoders.contrastive import DEFAULT_TRAINING, ContrastiveEncoder
from fmri_encoders.training import TrainingConfig, training_for


class NearestTrainingImage(ReconstructionMethod):
    """A ContrastiveEncoder fitted on the training trials; each test trial gets the training stimulus whose
    image embedding is nearest (cosine) to its fMRI embedding.

    It can only ever show images it was trained on, so its pixel scores bound what retrieval alone can do;
    `similarities` scores identification among any candidate images instead.
    clip_model: a CLIP vision folder or cached Hub id for the image side (None: a CNN trained jointly).
    training: how the encoder is optimised (the loop's TrainingConfig; seed, device and progress come from
    the run's settings, the step count from epochs, or quick_epochs in quick mode).
    """

    name = "retrieval"

    def __init__(
        self,
        settings: MethodSettings | None = None,
        *,
        clip_model: str | Path | None = None,
        epochs: int = 100,
        quick_epochs: int = 10,
        training: TrainingConfig = DEFAULT_TRAINING,
    ) -> None:
        super().__init__(settings)
        self.clip_model = clip_model
        self.epochs = epochs
        self.quick_epochs = quick_epochs
        self.training = training

    def fit(self, train: PairedDataset) -> NearestTrainingImage:
        self.encoder_ = ContrastiveEncoder(
            clip_model=self.clip_model,
            epochs=self.quick_epochs if self.settings.quick else self.epochs,
            training=training_for(self.training, self.settings),
        )
        self.encoder_.fit(train.fmri, train.images, groups=train.stimulus_id)
        _, first = np.unique(train.stimulus_id, return_index=True)
        self.images_ = train.images[np.sort(first)]
        self.image_embeddings_ = self.encoder_.embed_images(self.images_)
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        nearest = (self.encoder_.embed_fmri(fmri) @ self.image_embeddings_.T).argmax(axis=1)
        return self.images_[nearest].astype(np.float32)

    def similarities(self, fmri: np.ndarray, candidate_images: np.ndarray) -> np.ndarray:
        """[n, n_candidates] cosine similarity of each trial's fMRI embedding to each candidate image."""
        return self.encoder_.embed_fmri(fmri) @ self.encoder_.embed_images(candidate_images).T
