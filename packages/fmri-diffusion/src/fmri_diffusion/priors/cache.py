"""Where base models pre-trained here are kept: a folder per recipe, written whole or not at all."""

from __future__ import annotations

from pathlib import Path

from fmri_diffusion.priors.loading import BaseModel, load_base_model
from fmri_encoders.runtime import on_main_process
from fmri_eval.atomic import atomic_output_dir


class BaseModelCache:
    """Base models by key (fmri_diffusion.priors.small.SmallBaseConfig.key) in `folder/<key>/`.

    A run's cache_dir holds one, so the small base pre-trains once for every fold and every later run with
    the same recipe; with no folder nothing is kept and each fit pre-trains again.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = None if folder is None else Path(folder).resolve()  # manifests name it from anywhere

    def load(self, key: str) -> BaseModel | None:
        """The saved model of `key` (its source and folder set to where it lies), or None."""
        if self.folder is None or not (self.folder / key / "unet" / "config.json").is_file():
            return None
        return load_base_model(self.folder / key)

    def save(self, key: str, model: BaseModel) -> BaseModel:
        """Write `model` (staged, then renamed: a killed run leaves no half model); it now names that folder
        as its source, which is what a saved fine-tune records as its base."""
        if self.folder is None:
            return model
        folder = self.folder / key

        def write() -> None:
            with atomic_output_dir(folder) as staging:
                model.save(staging)

        on_main_process(write)
        model.source, model.folder = str(folder), folder
        return model
