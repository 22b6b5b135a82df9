"""Contrastive fMRI encoders: fMRI and seen images mapped into one space by symmetric InfoNCE."""

from fmri_encoders.contrastive.clip_image import ClipImageEncoder, load_clip_image_encoder
from fmri_encoders.contrastive.encoder import ContrastiveEncoder
from fmri_encoders.contrastive.fmri_encoder import FmriEncoder, FmriEncoderConfig, FmriEncoderOutput
from fmri_encoders.contrastive.image_encoder import ConvImageEncoder, ImageEncoderConfig
from fmri_encoders.contrastive.losses import LogitScale, group_targets, info_nce, mix_pairs, mixco
from fmri_encoders.contrastive.training import DEFAULT_TRAINING, Augmentation

__all__ = [
    "DEFAULT_TRAINING",
    "Augmentation",
    "ClipImageEncoder",
    "ContrastiveEncoder",
    "ConvImageEncoder",
    "FmriEncoder",
    "FmriEncoderConfig",
    "FmriEncoderOutput",
    "ImageEncoderConfig",
    "LogitScale",
    "group_targets",
    "info_nce",
    "load_clip_image_encoder",
    "mix_pairs",
    "mixco",
]
