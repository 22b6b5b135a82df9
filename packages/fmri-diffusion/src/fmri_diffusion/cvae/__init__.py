"""A conditional VAE over images given a first-stage (ridge) reconstruction: model, training, save/load."""

from fmri_diffusion.cvae.augment import shift_jointly
from fmri_diffusion.cvae.io import load_cvae, save_cvae
from fmri_diffusion.cvae.model import ConditionalVaeNet, CvaeConfig, kl_to_standard_normal, negative_elbo
from fmri_diffusion.cvae.training import CvaeTraining, train_cvae

__all__ = [
    "ConditionalVaeNet",
    "CvaeConfig",
    "CvaeTraining",
    "kl_to_standard_normal",
    "load_cvae",
    "negative_elbo",
    "save_cvae",
    "shift_jointly",
    "train_cvae",
]
