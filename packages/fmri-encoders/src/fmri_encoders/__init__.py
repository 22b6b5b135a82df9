"""fmri_encoders."""

__version__ = "0.1.0"
