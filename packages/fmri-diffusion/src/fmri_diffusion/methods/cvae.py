"""The `cvae` method: a conditional VAE on top of ridge, the earlier projects' generative baseline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_diffusion.models.cvae import ConditionalVaeNet, CvaeConfig, negative_elbo
from fmri_diffusion.training.augment import random_shift
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import loop as trainer
from fmri_encoders.training import loss_curves
from fmri_encoders.training.loop import BatchSampler, TrainingConfig, training_for

DEFAULT_TRAINING = TrainingConfig(
    max_steps=900, batch_size=32, learning_rate=2e-3, warmup_steps=20, ema_decay=None
)


class ConditionalVAE(ReconstructionMethod):
    """Ridge reconstructs pixels from voxels; a CVAE p(x | z, ridge image) with z ~ N(0, I) turns that into
    images.

    The CVAE trains on out-of-fold ridge reconstructions of the training trials (each predicted by a ridge
    fitted without its stimulus, one alpha shared by all pixels), so the noise of its condition matches
    test time; test trials are conditioned on a ridge fitted on all training trials. Reports "cvae", the
    mean of n_samples = 16 decoded prior samples (a posterior-mean estimate), and "cvae-1", the first of
    them. beta weighs the KL term; max_shift is the joint random shift of image and condition. Training
    runs through fmri_encoders.training.loop (checkpoints and resume under work_dir/cvae); quick mode trains
    for quick_steps.
    """

    name = "cvae"

    def __init__(
        self,
        settings: MethodSettings | None = None,
        *,
        latent_dim: int = 16,
        width: int = 16,
        beta: float = 1.0,
        max_shift: int = 2,
        training: TrainingConfig = DEFAULT_TRAINING,
        quick_steps: int = 10,
        n_samples: int = 16,
        ridge_folds: int = 5,
    ) -> None:
        super().__init__(settings)
        self.latent_dim = latent_dim
        self.width = width
        self.beta = beta
        self.max_shift = max_shift
        self.training = training
        self.quick_steps = quick_steps
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
        torch.manual_seed(self.settings.seed)
        self.model_ = ConditionalVaeNet(CvaeConfig(train.image_shape[0], self.latent_dim, self.width))
        pairs = {
            "x": torch.from_numpy(train.images[:, None]),
            "c": torch.from_numpy(np.ascontiguousarray(conditions, dtype=np.float32)[:, None]),
        }
        training = training_for(self.training, self.settings)
        if self.settings.quick:
            training = replace(training, max_steps=self.quick_steps)
        sampler = BatchSampler(
            pairs,
            training.batch_size,
            seed=self.settings.seed,
            augment=lambda batch, gen: random_shift(batch, self.max_shift, gen),
        )
        work_dir = self.settings.work_dir
        self.training_ = trainer.train(
            self.model_,
            lambda model, batch, _: negative_elbo(model, batch["x"], batch["c"], self.beta)[0],
            sampler,
            training,
            out_dir=None if work_dir is None else work_dir / self.name,
            resume="latest" if self.settings.resume and work_dir is not None else None,
            description=self.name,
        )
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def artefacts(self) -> dict[str, Path]:
        return loss_curves(loss_curve=getattr(self, "training_", None))

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
