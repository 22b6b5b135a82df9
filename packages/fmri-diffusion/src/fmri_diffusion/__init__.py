"""fmri_diffusion."""

from importlib.metadata import version

__version__ = version("fmri-diffusion")  # the one source: the package's pyproject.toml
