"""A conditional VAE over images given a first-stage (ridge) reconstruction: model and save/load."""

from fmri_diffusion.cvae.io import load_cvae, save_cvae
from fmri_diffusion.cvae.model import ConditionalVaeNet, CvaeConfig, kl_to_standard_normal, negative_elbo

__all__ = [
    "ConditionalVaeNet",
    "CvaeConfig",
    "kl_to_standard_normal",
    "load_cvae",
    "negative_elbo",
    "save_cvae",
]
