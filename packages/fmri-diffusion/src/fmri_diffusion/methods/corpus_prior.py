"""A prior for `ddpm` and `ldm` learned from the run's unpaired image corpus (`corpus_finetune` above 0).

A fold holds 16 to 90 training figures; on their own, the conditional UNet (and `ldm`'s autoencoder) learn
images from those alone, in full, twice per fold (the validation probe and the final fit). A corpus holds
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
from dataclasses import asdict, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fmri_data.methods import MethodSettings
from fmri_data.simulator import image_corpus
from fmri_diffusion.priors import screened_corpus
from fmri_encoders.runtime import on_main_process
from fmri_encoders.training import TrainingConfig, numerics_for
from fmri_eval.atomic import atomic_output_dir

if TYPE_CHECKING:
    from fmri_diffusion.methods.conditional import ConditionalDiffusion

SIMULATOR_CORPUS_SIZE = 3000
"""Images drawn from the simulator's corpus where the run names no prior corpus."""
NOT_LEARNED = frozenset({"sampler", "encoding_voxels", "encoding_model", "corpus_finetune"})
"""Config fields, besides the sampling settings, that the prior's weights do not depend on."""


def corpus_prior(method: ConditionalDiffusion) -> tuple[ConditionalDiffusion, dict[str, Any]]:
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
    if folder is not None and (folder / "model_index.json").is_file():
        prior.load_pipeline(folder)
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
                prior.pipeline_.save_pretrained(staging)
            shutil.rmtree(checkpoints, ignore_errors=True)

        on_main_process(write)
    return prior, record | {"pre_trained": "in this fit"}


def _key(method: ConditionalDiffusion) -> str:
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
