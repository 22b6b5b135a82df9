"""ContrastiveEncoder: fMRI and seen images mapped into one embedding space, scikit-learn style."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed
from torch import nn

from fmri_data.errors import DataError
from fmri_encoders.contrastive.clip_image import ClipImageEncoder, load_clip_image_encoder
from fmri_encoders.contrastive.fmri_encoder import (
    DEFAULT_SUBJECT,
    FmriEncoder,
    FmriEncoderConfig,
    FmriEncoderOutput,
)
from fmri_encoders.contrastive.image_encoder import ConvImageEncoder, ImageEncoderConfig
from fmri_encoders.contrastive.training import (
    DEFAULT_TRAINING,
    Augmentation,
    ContrastivePair,
    train_contrastive,
)
from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import TrainingConfig

ArrayBySubject = np.ndarray | Mapping[str, np.ndarray]
_SAVED_AS = "contrastive"
_BATCH = 256


class ContrastiveEncoder:
    """Dual encoder trained with symmetric InfoNCE: `fit(fmri, images)`, then `embed_fmri` / `embed_images`.

    hidden, n_blocks, dropout, embed_dim, n_tokens, token_dim: the fMRI encoder (FmriEncoderConfig).
    cnn_channels: width of the jointly trained CNN image encoder, used when clip_model is None.
    clip_model: a folder or cached Hub id of a CLIP vision model; it becomes the frozen image side, its
        projection size replaces embed_dim, and only its path is saved with this model.
    epochs: full passes over the training trials (a fixed budget: ~100 trials leave nothing to spare for a
        validation split). init_temperature: the learned temperature's start (CLIP's 0.07).
    augmentation: what each batch gets (Augmentation(): MixCo and voxel noise off when None).
    training: how the loop optimises (contrastive.DEFAULT_TRAINING when None); its max_steps is set from
        epochs.
    """

    def __init__(
        self,
        *,
        hidden: int = 512,
        n_blocks: int = 2,
        dropout: float = 0.3,
        embed_dim: int = 128,
        n_tokens: int = 4,
        token_dim: int | None = None,
        cnn_channels: int = 32,
        clip_model: str | Path | None = None,
        epochs: int = 100,
        init_temperature: float = 0.07,
        augmentation: Augmentation | None = None,
        training: TrainingConfig | None = None,
    ) -> None:
        self.hidden = hidden
        self.n_blocks = n_blocks
        self.dropout = dropout
        self.embed_dim = embed_dim
        self.n_tokens = n_tokens
        self.token_dim = token_dim
        self.cnn_channels = cnn_channels
        self.clip_model = clip_model
        self.epochs = epochs
        self.init_temperature = init_temperature
        self.augmentation = augmentation
        self.training = training

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        fmri: ArrayBySubject,
        images: ArrayBySubject,
        subject: str | None = None,
        groups: ArrayBySubject | None = None,
    ) -> ContrastiveEncoder:
        """Train on trials of one subject ([n, v] arrays, named `subject`) or of several ({name: array}).

        images: [n, H, W] in [0, 1]. groups: stimulus ids, so that repeats of one image are not treated
        as each other's negatives (each trial its own group when None).
        """
        config = self.training or DEFAULT_TRAINING
        trials = _by_subject(fmri, images, subject, groups)
        set_seed(config.seed)
        device = torch.device(resolve_device(config.device))
        self.voxel_mean_ = {name: x.mean(axis=0) for name, (x, _, _) in trials.items()}
        self.voxel_std_ = {name: _safe_std(x) for name, (x, _, _) in trials.items()}
        if self.clip_model is None:
            self.clip_source_ = None
            self.image_encoder_ = ConvImageEncoder(ImageEncoderConfig(self.embed_dim, self.cnn_channels))
            embed_dim = self.embed_dim
        else:
            self.clip_source_ = _clip_source(self.clip_model)
            self.image_encoder_ = load_clip_image_encoder(self.clip_source_)
            embed_dim = self.image_encoder_.embed_dim
        self.image_encoder_.to(device)
        encoder_config = FmriEncoderConfig(
            n_voxels={name: x.shape[1] for name, (x, _, _) in trials.items()},
            hidden=self.hidden,
            n_blocks=self.n_blocks,
            dropout=self.dropout,
            embed_dim=embed_dim,
            n_tokens=self.n_tokens,
            token_dim=self.token_dim,
        )
        self.fmri_encoder_ = FmriEncoder(encoder_config).to(device)
        frozen = isinstance(self.image_encoder_, ClipImageEncoder)
        data = {
            name: {
                "voxels": torch.from_numpy(self._standardise(x, name)),
                "images": torch.from_numpy(self._run(self.image_encoder_, imgs) if frozen else imgs),
                "groups": torch.from_numpy(g),
            }
            for name, (x, imgs, g) in trials.items()
        }
        pair = ContrastivePair(
            self.fmri_encoder_, None if frozen else self.image_encoder_, self.init_temperature
        )
        augmentation = self.augmentation or Augmentation()
        self.loss_history_ = train_contrastive(pair, data, self.epochs, augmentation, config)
        self.logit_scale_ = float(pair.scale().item())
        return self

    # ------------------------------------------------------------- embedding
    def embed_fmri(self, fmri: np.ndarray, subject: str | None = None) -> np.ndarray:
        """[n, v] fMRI -> [n, d] L2-normalised embeddings, comparable by cosine with embed_images."""
        return _normalise(self._encode(fmri, subject, lambda out: out.embedding))

    def embed_tokens(self, fmri: np.ndarray, subject: str | None = None) -> np.ndarray:
        """[n, v] fMRI -> [n, n_tokens, token_dim] tokens for a decoder to cross-attend to."""
        return self._encode(fmri, subject, lambda out: out.tokens)

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """[n, H, W] images in [0, 1] -> [n, d] L2-normalised embeddings."""
        self._check_fitted()
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 3:
            raise DataError(f"images must be [n, H, W], got shape {images.shape}")
        return _normalise(self._run(self.image_encoder_, images))

    def _encode(
        self, fmri: np.ndarray, subject: str | None, pick: Callable[[FmriEncoderOutput], torch.Tensor]
    ) -> np.ndarray:
        self._check_fitted()
        name = self.fmri_encoder_.subject_name(subject)
        voxels = self._standardise(_as_2d(fmri, "fmri"), name)
        return self._run(lambda batch: pick(self.fmri_encoder_(batch, name)), voxels)

    def _standardise(self, fmri: np.ndarray, name: str) -> np.ndarray:
        mean = self.voxel_mean_[name]
        if fmri.shape[1] != mean.shape[0]:
            raise DataError(
                f"fmri has {fmri.shape[1]} voxels; subject {name!r} was fitted on {mean.shape[0]}"
            )
        return ((fmri - mean) / self.voxel_std_[name]).astype(np.float32)

    def _run(self, fn: Callable[[torch.Tensor], torch.Tensor] | nn.Module, values: np.ndarray) -> np.ndarray:
        """Apply `fn` without gradients, in chunks, on the models' device; float32 numpy out."""
        device = next(self.fmri_encoder_.parameters()).device
        outputs = []
        with torch.no_grad():
            for start in range(0, len(values), _BATCH):
                batch = torch.from_numpy(np.ascontiguousarray(values[start : start + _BATCH])).to(device)
                outputs.append(fn(batch).float().cpu().numpy())
        return np.concatenate(outputs)

    # -------------------------------------------------------------------- io
    def save(self, directory: str | Path) -> Path:
        """Write contrastive.json and contrastive.safetensors (a CLIP model by path only)."""
        self._check_fitted()
        tensors: dict[str, torch.Tensor | np.ndarray] = {
            f"fmri.{k}": v for k, v in self.fmri_encoder_.state_dict().items()
        }
        if self.clip_source_ is None:
            tensors |= {f"image.{k}": v for k, v in self.image_encoder_.state_dict().items()}
        for name in self.voxel_mean_:
            tensors[f"voxel_mean.{name}"] = self.voxel_mean_[name]
            tensors[f"voxel_std.{name}"] = self.voxel_std_[name]
        training = replace(self.training or DEFAULT_TRAINING, log_with=None)  # a tracker is no model setting
        config = {
            "params": {
                **self._params(),
                "augmentation": asdict(self.augmentation or Augmentation()),
                "training": asdict(training),
            },
            "fmri_encoder": asdict(self.fmri_encoder_.config),
            "clip_source_": self.clip_source_,
            "logit_scale_": self.logit_scale_,
            "loss_history_": self.loss_history_,
        }
        save_settings_and_tensors(directory, _SAVED_AS, config, tensors)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> ContrastiveEncoder:
        """Rebuild a saved encoder; a CLIP image side is reloaded from its stored path."""
        config, tensors = load_settings_and_tensors(directory, _SAVED_AS)
        params = config["params"]
        augmentation = Augmentation(**params.pop("augmentation"))
        training = TrainingConfig(**params.pop("training"))
        model = cls(**params, augmentation=augmentation, training=training)
        device = torch.device(resolve_device(model.training.device))
        model.fmri_encoder_ = FmriEncoder(FmriEncoderConfig(**config["fmri_encoder"]))
        model.fmri_encoder_.load_state_dict(_with_prefix(tensors, "fmri."))
        model.clip_source_ = config["clip_source_"]
        if model.clip_source_ is None:
            model.image_encoder_ = ConvImageEncoder(ImageEncoderConfig(model.embed_dim, model.cnn_channels))
            model.image_encoder_.load_state_dict(_with_prefix(tensors, "image."))
        else:
            model.image_encoder_ = load_clip_image_encoder(model.clip_source_)
        model.fmri_encoder_.to(device).eval()
        model.image_encoder_.to(device).eval()
        subjects = model.fmri_encoder_.config.n_voxels
        model.voxel_mean_ = {name: tensors[f"voxel_mean.{name}"].numpy() for name in subjects}
        model.voxel_std_ = {name: tensors[f"voxel_std.{name}"].numpy() for name in subjects}
        model.logit_scale_ = float(config["logit_scale_"])
        model.loss_history_ = [float(v) for v in config["loss_history_"]]
        return model

    def _params(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "n_blocks": self.n_blocks,
            "dropout": self.dropout,
            "embed_dim": self.embed_dim,
            "n_tokens": self.n_tokens,
            "token_dim": self.token_dim,
            "cnn_channels": self.cnn_channels,
            "clip_model": None if self.clip_model is None else str(self.clip_model),
            "epochs": self.epochs,
            "init_temperature": self.init_temperature,
        }

    def _check_fitted(self) -> None:
        if not hasattr(self, "fmri_encoder_"):
            raise RuntimeError("this ContrastiveEncoder is not fitted yet; call fit(fmri, images) first")


def _by_subject(
    fmri: ArrayBySubject, images: ArrayBySubject, subject: str | None, groups: ArrayBySubject | None
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Normalise fit's inputs to {subject: (fmri [n, v], images [n, H, W], groups [n])}."""
    if not isinstance(fmri, Mapping):
        if isinstance(images, Mapping) or isinstance(groups, Mapping):
            raise DataError("fmri is one array, so images and groups must be arrays too")
        return {subject or DEFAULT_SUBJECT: _check_trials(fmri, images, groups)}
    if subject is not None:
        raise DataError("fmri is given by subject already; leave subject=None")
    if not isinstance(images, Mapping) or set(images) != set(fmri):
        raise DataError("with fmri given by subject, images must be a mapping with the same subjects")
    if groups is not None and (not isinstance(groups, Mapping) or set(groups) != set(fmri)):
        raise DataError("with fmri given by subject, groups must be None or a mapping of the same subjects")
    return {
        name: _check_trials(fmri[name], images[name], None if groups is None else groups[name])
        for name in fmri
    }


def _check_trials(
    fmri: np.ndarray, images: np.ndarray, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fmri = _as_2d(fmri, "fmri")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or len(images) != len(fmri):
        raise DataError(f"images must be [{len(fmri)}, H, W] to match fmri, got shape {images.shape}")
    groups = np.arange(len(fmri)) if groups is None else np.asarray(groups)
    if groups.shape != (len(fmri),):
        raise DataError(f"groups must hold one id per trial ({len(fmri)}), got shape {groups.shape}")
    if len(fmri) < 2:
        raise DataError("contrastive training needs at least 2 trials")
    return fmri, images, np.unique(groups, return_inverse=True)[1].astype(np.int64)


def _as_2d(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise DataError(f"{name} must be 2-D [n_trials, n_voxels], got shape {values.shape}")
    if not np.isfinite(values).all():
        raise DataError(f"{name} contains NaN or inf")
    return values


def _safe_std(values: np.ndarray) -> np.ndarray:
    std = values.std(axis=0)
    return np.where(std > 0, std, 1.0).astype(np.float32)


def _normalise(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)


def _clip_source(clip_model: str | Path) -> str:
    """An existing folder as an absolute path (so a saved model finds it again from anywhere), else the id."""
    path = Path(clip_model).expanduser()
    return str(path.resolve()) if path.exists() else str(clip_model)


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
