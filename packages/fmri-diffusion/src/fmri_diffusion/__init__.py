"""fmri_diffusion."""

__version__ = "0.1.0"
