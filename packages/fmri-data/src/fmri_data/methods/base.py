"""The interface every reconstruction method implements, whatever package it lives in."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from fmri_data.corpora import PriorCorpus
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.splits import VALIDATION_FOLDS

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class MethodSettings:
    """Run-wide settings every method receives; method-specific knobs stay in the method's own config.

    device: "auto", "cpu", "cuda", "cuda:N" or "mps" (methods without torch ignore it).
    quick: a smoke-test budget (few steps) for tests and first tries; numbers from it are not results.
    work_dir: where a method keeps checkpoints, curves and trained models (None: keep nothing). The fold
        runner gives each fold its own sub-folder.
    resume: continue training from the latest checkpoint in work_dir instead of starting afresh.
    pretrained: a local folder (or an id in the offline Hugging Face cache) of pretrained weights for
        methods built on a pretrained model (the sd-* methods: a diffusers Stable Diffusion folder).
    allow_download: let `pretrained` name a Hugging Face id that is not cached yet, and fetch it (off by
        default: nothing touches the network).
    cache_dir: where fold-independent artefacts (e.g. a base model pre-trained here) are kept and reused
        across folds and runs; unlike work_dir, the fold runner does not split it.
    progress: show training progress bars.
    log_with: an accelerate tracker name ("tensorboard", "wandb") that every training stage logs its loss
        and learning rate to, under its folder in work_dir (<stage>/logs); None logs nothing.
    sampling: overrides of a generative method's sampling settings by config field name (strength,
        guidance_scale, num_inference_steps, ...); methods whose config lacks a field ignore it.
    choices: config field name (or "readout") -> candidate values; a generative method picks the best
        combination on validation stimuli held out of its training trials (never on test trials) before
        it fits.
    In `sampling` and `choices` a key "METHOD:field" holds for that method alone and overrides "field"
    there (`for_method`): methods run side by side, such as an ensemble's members, each keep their own
    grid.
    prior_corpus: unpaired images a base model (prior) pre-trains on, screened against every test stimulus
        of the run (fmri_data.corpora); None: the simulator's built-in corpus.
    mixed_precision: "bf16" or "fp16" (a GPU's) for every training stage; None: each model's own ("no"),
        which under `accelerate launch --mixed_precision` must be the launch's.
    batch_size: rows per micro-batch for every training stage counted in steps (None: each model's own;
        mlp and the contrastive encoder, trained in whole epochs, keep theirs, the latter's being InfoNCE's
        negatives too); with gradient_accumulation_steps K an update averages batch_size x K rows.
    gradient_accumulation_steps: micro-batches per optimizer update for every training stage (None: each
        model's own); with batch_size and gradient_checkpointing (the sd-* routes' UNet), what fits a
        small GPU.
    compile: the UNet of the sd-* routes, ddpm and ldm (and ldm's autoencoder) runs through `torch.compile`
        for training and sampling (on one H200, an SD-1.5-shaped LoRA fine-tune 117 -> 167 img/s,
        generation 6.1 -> 8.2 img/s, measured by benchmarks/sd_lora_speed.py). The first calls compile
        (minutes where inductor's on-disk cache is empty): it pays on long runs of large models, or where a
        small model's many small kernels are bound by the host launching them (a GPU's);
        on 2 CPU cores the whole digit69_ldm run took as long compiled as eager
        (benchmarks/results/digit69_ldm_compiled-cpu2.json).
    optimizer: "adamw" or "adafactor" for every training stage (None: each model's own, AdamW); Adafactor
        keeps factored second moments only, which saves a whole SD-sized UNet (sd-full) 5.6 GiB of GPU
        memory (benchmarks/sd_small_gpu.py).
    ema: False trains every stage without its EMA copy of the weights (the last weights are kept): a whole
        SD-sized UNet's EMA takes 3.2 GiB of GPU memory (benchmarks/sd_small_gpu.py).
    train_steps: every training stage counted in steps trains this multiple of its own steps, warm-up
        included (1: each model's own; mlp and the contrastive encoder, trained in whole epochs, keep
        theirs). With a larger batch_size it sees as many images in fewer updates, which is what a GPU
        bound by launching a small model's kernels runs faster; it changes what the models learn.
    probe_steps: the fraction of each per-fold training stage's steps that a probe fitted to choose
        settings on validation (`choices`) trains for; the final fit trains in full. A probe only ranks
        settings against each other, so a shorter one may rank them as a full one would, in less time.
    refit_steps: below 1, the final fit after choosing on validation starts from the probe's weights
        (trained on the other four fifths of the training stimuli) and trains this fraction of each
        per-fold stage's steps on all of them; 1 fits afresh in full. Methods that cannot start from their
        probe (all but `cvae`, `ddpm` and `ldm`) fit afresh, and their validation record says so.
    validation_folds: how many of the training stimuli's fifths are held out in turn to score `choices`,
        each with probes fitted on the other four fifths; the choice is the best mean over them. One fifth
        holds 3 to 4 stimuli on Miyawaki or 18 on digit69, few enough that which of several near-equal
        settings wins is partly chance: more folds score each setting on more stimuli, at that many times
        the probes' time. An ensemble weighs its members on the same folds (each member choosing its own
        settings on as many folds inside each). Above 1, the final fit cannot start from a probe
        (refit_steps must stay 1).
    """

    seed: int = 0
    device: str = "auto"
    quick: bool = False
    work_dir: Path | None = None
    resume: bool = False
    pretrained: str | None = None
    allow_download: bool = False
    cache_dir: Path | None = None
    progress: bool = True
    log_with: str | None = None
    sampling: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    prior_corpus: PriorCorpus | None = None
    mixed_precision: str | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    gradient_checkpointing: bool = False
    compile: bool = False
    optimizer: str | None = None
    ema: bool = True
    train_steps: float = 1.0
    probe_steps: float = 1.0
    refit_steps: float = 1.0
    validation_folds: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.train_steps < math.inf:
            raise DataError(f"train_steps must be a number above 0, got {self.train_steps}")
        if not 1 <= self.validation_folds <= VALIDATION_FOLDS:
            raise DataError(
                f"validation_folds must be 1 to {VALIDATION_FOLDS} (fifths of the training stimuli), "
                f"got {self.validation_folds}"
            )
        if self.validation_folds > 1 and self.refit_steps < 1:
            raise DataError(
                "refit_steps below 1 starts the final fit from the one probe of a single validation fold; "
                f"with validation_folds={self.validation_folds} set refit_steps to 1 or validation_folds to 1"
            )

    def configure(self, config: ConfigT) -> ConfigT:
        """A method's config (a dataclass with `quick()`): its smoke-test budget under `quick`, then the
        `sampling` overrides it has fields for (so --steps and --samples hold under --quick too)."""
        config = config.quick() if self.quick else config
        names = {f.name for f in fields(config)}
        return replace(config, **{k: v for k, v in self.sampling.items() if k in names})

    def for_method(self, name: str) -> MethodSettings:
        """The settings as the method called `name` sees them: its own "name:field" keys in `sampling` and
        `choices` in place of the run-wide "field", and every other method's dropped."""
        return replace(self, sampling=_scoped(self.sampling, name), choices=_scoped(self.choices, name))

    def shows_progress(self, wanted: bool = True) -> bool:
        """Whether a method's own progress bars (training steps) show: never under quick or progress=False."""
        return wanted and self.progress and not self.quick


SCOPE = ":"
"""Separates a method's name from a setting's in a key that holds for that method alone."""


def _scoped(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Run-wide keys, then `name`'s own "name:key" ones over them; other methods' keys left out."""
    shared = {key: value for key, value in values.items() if SCOPE not in key}
    own = {
        key.partition(SCOPE)[2]: value
        for key, value in values.items()
        if key.partition(SCOPE)[0] == name and SCOPE in key
    }
    return shared | own


class ReconstructionMethod(ABC):
    """fit on training trials, then map test fMRI to images in [0, 1].

    A method sees only the training side of a split in `fit`; `predict` gets test fMRI alone, so it cannot
    peek at test images. Stochastic methods override `predict_named` to return their posterior mean under
    their own name and one single sample under `<name>-1`.
    """

    name: ClassVar[str]
    colour: ClassVar[bool] = False
    """Whether the method reconstructs RGB images [n, H, W, 3] from colour data (NSD loaded in colour);
    the runner refuses colour data for the others before anything trains."""

    def __init__(self, settings: MethodSettings | None = None) -> None:
        self.settings = settings or MethodSettings()

    @abstractmethod
    def fit(self, train: PairedDataset) -> ReconstructionMethod:
        """Learn from the training trials (fMRI already preprocessed with training-only statistics)."""

    @abstractmethod
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        """Reconstruct [n, H, W] images (or [n, H, W, 3], RGB, from colour data) in [0, 1] from
        [n, n_voxels] fMRI."""

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs this method reports, by row name in the results table."""
        return {self.name: self.predict(fmri)}

    @classmethod
    def settings_to_choose(cls) -> frozenset[str]:
        """The `MethodSettings.choices` keys this method chooses among on validation; none by default (it
        ignores them)."""
        return frozenset()

    @classmethod
    def settings_read(cls) -> frozenset[str]:
        """The `MethodSettings.sampling` keys this method takes (its config's fields, `configure`); by
        default those it chooses among."""
        return cls.settings_to_choose()

    @classmethod
    def predict_time_settings(cls) -> frozenset[str]:
        """Those of `settings_to_choose` that a fitted method applies when it predicts: choosing among
        them fits no other model, so `--resume` may change their grid (methods.fingerprint); none by
        default."""
        return frozenset()

    @classmethod
    def fits_each_choice_apart(cls) -> bool:
        """Whether the final fit for each value validation may choose of a setting it fits by keeps a
        folder of its own, so that a resumed run whose choice moves fits (or resumes) that value's model
        and never loads another's: `--resume` may then change its predict-time grid even where the grid
        offers several values of such a setting (methods.fingerprint). False by default."""
        return False

    def check_colour(self) -> None:
        """Raise DataError if this method, as configured, cannot reconstruct colour: the runner asks before
        any fold trains. By default a `colour` method always can; one whose routes differ overrides it."""
        if not self.colour:
            raise DataError(
                f"{self.name} reconstructs grayscale images only; load the data in grayscale (leave out "
                "--colour, or convert an .npz's images to grayscale)"
            )

    def check_stimuli(self, stimuli: PairedDataset) -> None:  # noqa: B027 (a hook most methods leave empty)
        """Raise DataError if this method, as configured, cannot learn from these stimuli (e.g. they lack a
        design or captions it needs): the runner asks, with one trial of every stimulus any fold trains on,
        before any fold trains. Any stimuli by default."""

    def records(self) -> dict[str, Any]:
        """JSON-ready facts of this fit for metrics.json (e.g. settings chosen on validation); none by
        default."""
        return {}

    def timings(self) -> dict[str, float]:
        """Wall seconds of named parts of the fit (e.g. "validation": choosing settings), apart from
        records() because they differ from run to run; none by default."""
        return {}

    def artefacts(self) -> dict[str, Path]:
        """Files a run's report should carry after `fit` (e.g. {"loss_curve": path}); none by default.

        The method says where its files are, so apps never rebuild a path convention to find them.
        """
        return {}


@runtime_checkable
class IdentifiesStimuli(Protocol):
    """A method that can also score fMRI against candidate images (e.g. a contrastive encoder).

    The runner calls it with every stimulus tested in the split, to report brain <-> image identification;
    the candidate images are used for scoring only, never for fitting or reconstructing.
    """

    def similarities(self, fmri: np.ndarray, candidate_images: np.ndarray) -> np.ndarray:
        """[n_trials, n_candidates] scores, higher = more likely the seen image."""
        ...
