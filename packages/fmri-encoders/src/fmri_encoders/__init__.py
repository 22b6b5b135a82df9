"""fmri_encoders."""

from importlib.metadata import version

__version__ = version("fmri-encoders")  # the one source: the package's pyproject.toml
