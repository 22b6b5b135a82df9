"""The `cvae` method: a conditional VAE on top of ridge, the earlier projects' generative baseline."""

from __future__ import annotations

import numpy as np
import torch
from accelerate.utils import set_seed

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_diffusion.cvae import ConditionalVaeNet, CvaeConfig, CvaeTraining, train_cvae
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.runtime import make_accelerator, resolve_device


class ConditionalVAE(ReconstructionMethod):
    """Ridge reconstructs pixels from voxels; a CVAE p(x | z, ridge image) with z ~ N(0, I) turns that into
    images.

    The CVAE trains on out-of-fold ridge reconstructions of the training trials (each predicted by a ridge
    fitted without its stimulus, one alpha shared by all pixels), so the noise of its condition matches
    test time; test trials are conditioned on a ridge fitted on all training trials. Reports "cvae", the
    mean of n_samples = 16 decoded prior samples (a posterior-mean estimate), and "cvae-1", the first of
    them. Quick mode trains for quick_epochs.
    """

    name = "cvae"

    def __init__(
        self,
        settings: MethodSettings | None = None,
        *,
        latent_dim: int = 16,
        width: int = 16,
        training: CvaeTraining | None = None,
        quick_epochs: int = 5,
        n_samples: int = 16,
        ridge_folds: int = 5,
    ) -> None:
        super().__init__(settings)
        self.latent_dim = latent_dim
        self.width = width
        self.training = training or CvaeTraining()
        self.quick_epochs = quick_epochs
        self.n_samples = n_samples
        self.ridge_folds = ridge_folds

    def fit(self, train: PairedDataset) -> ConditionalVAE:
        if train.n_stimuli < 2:
            raise DataError(f"cvae needs at least 2 distinct training stimuli, got {train.n_stimuli}")
        device = resolve_device(self.settings.device)
        conditions, self.ridge_ = out_of_fold_ridge(
            train.fmri,
            train.images,
            train.stimulus_id,
            k=self.ridge_folds,
            seed=self.settings.seed,
            backend="torch_cuda" if device == "cuda" else "numpy",
            per_target=False,
        )
        self.image_shape_ = train.image_shape
        set_seed(self.settings.seed)
        accelerator = make_accelerator(device)
        self.model_ = ConditionalVaeNet(CvaeConfig(train.image_shape[0], self.latent_dim, self.width))
        training = self.training
        if self.settings.quick:
            training = CvaeTraining(**{**vars(training), "epochs": self.quick_epochs})
        self.losses_ = train_cvae(
            self.model_, train.images, conditions, training, accelerator, progress=not self.settings.quick
        )
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        """{"cvae": mean of n_samples prior samples, "cvae-1": one sample}, [n, H, W] float32 in [0, 1]."""
        conditions = self.ridge_.predict(fmri).reshape(len(fmri), 1, *self.image_shape_)
        device = next(self.model_.parameters()).device
        generator = torch.Generator().manual_seed(self.settings.seed)
        samples = self.model_.sample(torch.from_numpy(conditions).to(device), self.n_samples, generator)
        samples = samples[:, :, 0].float().cpu().numpy()
        return {
            self.name: np.clip(samples.mean(axis=0), 0.0, 1.0).astype(np.float32),
            f"{self.name}-1": np.clip(samples[0], 0.0, 1.0).astype(np.float32),
        }
