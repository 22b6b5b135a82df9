"""A prior for `cvae`, `ddpm` and `ldm` learned from the run's unpaired image corpus (`corpus_finetune` > 0).

A fold holds 16 to 90 training figures; on their own, the CVAE or the conditional UNet (and `ldm`'s
autoencoder) learn images from those alone, in full, in every probe and final fit. A corpus holds
thousands of images of the same kind. So, once per recipe and corpus, the same networks pre-train on the
corpus with a stand-in for ridge's decoding as their condition (stand_in_condition), and each fit starts
from those weights and trains a fraction of its steps on the fold's images with ridge's real decodings.
The pre-trained networks are kept in the run's cache folder (else its work folder), by method, recipe,
image size, seed and the corpus's content hash, written whole or not at all; under `--resume` a killed
pre-training continues from its checkpoints, kept beside it until it is written (so two runs sharing a
cache folder should not pre-train the same prior at the same time).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from abc import abstractmethod
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings
from fmri_data.simulator import image_corpus
from fmri_diffusion.methods.base import DiffusionMethod
from fmri_diffusion.priors import screened_corpus
from fmri_encoders.runtime import on_main_process
from fmri_encoders.training import TrainingConfig, numerics_for
from fmri_eval.atomic import atomic_output_dir

SIMULATOR_CORPUS_SIZE = 3000
"""Images drawn from the simulator's corpus where the run names no prior corpus."""
NOT_LEARNED = frozenset(
    {"sampler", "encoding_voxels", "encoding_model", "corpus_finetune", "ridge_folds", "condition_readout"}
)
"""Config fields, besides the sampling settings, that the prior's weights do not depend on."""


def check_corpus_finetune(fraction: float) -> None:
    """A config's corpus_finetune is a share of each stage's steps (0: no pre-training)."""
    if not 0 <= fraction <= 1:
        raise DataError(f"corpus_finetune is a share of each stage's steps, in [0, 1]; got {fraction}")


class CorpusPrimedMethod(DiffusionMethod):
    """A method whose networks can first learn the run's prior corpus (config.corpus_finetune above 0):
    its `fit_parts` calls `start_from_corpus` first, then trains from `warm_start_`'s weights where there
    is one. A subclass says how its networks learn unpaired images and how they are kept in the cache."""

    starts_from_probe: ClassVar[bool] = True
    warm_start_: CorpusPrimedMethod | None
    corpus_prior_: dict[str, Any] | None = None
    """Where a fit under corpus_finetune started: the corpus, the prior's cache key, whether it was
    pre-trained in this fit or read from the cache (or reached through the validation probe), and the
    share of the steps the fit trained."""

    @abstractmethod
    def fit_prior(self, images: np.ndarray) -> None:
        """Pre-train on unpaired images ([n, H, W] in [0, 1]), each conditioned on a stand-in for ridge's
        decoding of it (stand_in_condition)."""

    @abstractmethod
    def save_prior(self, folder: Path) -> None:
        """Write the pre-trained networks into `folder`."""

    @abstractmethod
    def load_prior(self, folder: Path) -> None:
        """Read back what save_prior wrote."""

    def start_from_corpus(self) -> None:
        """Start from the prior pre-trained on the corpus and train corpus_finetune of each stage's steps;
        a final fit starting from its validation probe (refit_steps), which started there, trains that
        share instead."""
        if self.config.corpus_finetune == 0:
            return
        if self.warm_start_ is not None and self.warm_start_.corpus_prior_ is not None:
            self.corpus_prior_ = self.warm_start_.corpus_prior_ | {"pre_trained": "via the validation probe"}
        else:
            self.warm_start_, self.corpus_prior_ = corpus_prior(self)
            self.step_fraction *= self.config.corpus_finetune
        self.corpus_prior_["step_fraction"] = self.step_fraction

    def records(self) -> dict[str, Any]:
        prior = self.corpus_prior_
        return super().records() | ({} if prior is None else {"corpus_prior": prior})


def corpus_prior(method: CorpusPrimedMethod) -> tuple[CorpusPrimedMethod, dict[str, Any]]:
    """A copy of `method` whose networks learned the run's prior corpus (the simulator's where it names
    none): from the cache, else pre-trained now and cached; and the record of it for metrics.json."""
    settings = method.settings
    corpus = screened_corpus(settings)
    key = _key(method)
    root = settings.cache_dir or settings.work_dir
    folder = None if root is None else root / key
    checkpoints = None if root is None else root / f"{key}-checkpoints"  # a killed pre-training resumes
    prior = type(method)(replace(settings, work_dir=checkpoints, choices={}))
    prior.config = method.config
    prior.image_size_ = method.image_size_
    record = {"corpus": "simulator" if corpus is None else corpus.name, "key": key}
    if folder is not None and folder.is_dir():  # written whole or not at all
        prior.load_prior(folder)
        return prior, record | {"pre_trained": "from the cache"}
    images = (
        image_corpus(SIMULATOR_CORPUS_SIZE, method.image_size_, np.random.default_rng(settings.seed))
        if corpus is None
        else corpus.images
    )
    prior.fit_prior(images)
    if folder is not None:

        def write() -> None:
            with atomic_output_dir(folder) as staging:
                prior.save_prior(staging)
            shutil.rmtree(checkpoints, ignore_errors=True)

        on_main_process(write)
    return prior, record | {"pre_trained": "in this fit"}


def _key(method: CorpusPrimedMethod) -> str:
    """What the prior's weights depend on: the method, its fitting settings under the run's numerics (not
    how it samples, nor how much of a fit follows the prior), the stimulus size, the seed and the corpus's
    content (the simulator's: its size)."""
    settings = method.settings
    fitting = {
        name: value
        for name, value in asdict(_under_run(method.config, settings)).items()
        if name not in method.sampling_settings | NOT_LEARNED
    }
    corpus = settings.prior_corpus
    source = ["simulator", SIMULATOR_CORPUS_SIZE] if corpus is None else corpus.digest
    recipe = [method.name, fitting, method.image_size_, settings.seed, source]
    if settings.batch_size is not None:  # drawn by the prior's sampler since fmri-diffusion 0.28.1 only
        recipe.append({"batch_size_drawn": settings.batch_size})
    text = json.dumps(recipe, sort_keys=True, default=str)
    return f"{method.name}-prior-{method.image_size_}px-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _under_run(config: Any, settings: MethodSettings) -> Any:
    """`config` with every training stage in it (at any depth) under the run's precision, accumulation,
    optimizer and EMA, which change the weights it learns (training.numerics_for)."""
    changes = {}
    for field in fields(config):
        value = getattr(config, field.name)
        if isinstance(value, TrainingConfig):
            changes[field.name] = numerics_for(value, settings)
        elif is_dataclass(value):
            changes[field.name] = _under_run(value, settings)
    return replace(config, **changes)


def stand_in_condition(
    clean: torch.Tensor, mean: float, spread: float, generator: torch.Generator
) -> torch.Tensor:
    """What ridge might decode from a corpus image it never saw: the image shrunk towards the corpus mean
    and noised, by a level drawn per image in [0, 1] (0: the image itself; 1: noise alone, so the UNet also
    learns the corpus unconditioned). Ridge's decodings are exactly that, shrunk and noisy, by an amount the
    fine-tune on real decodings then learns."""
    level = torch.rand((len(clean), 1, 1, 1), generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    return mean + (1 - level) * (clean - mean) + level * spread * noise
