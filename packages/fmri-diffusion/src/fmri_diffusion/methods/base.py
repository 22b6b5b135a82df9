"""The skeleton every generative method of this package shares, so that each method states only what differs.

A `DiffusionMethod` is configured once (its config's quick budget, then the run's sampling overrides such
as `--samples` and `--steps`), trains each stage through the one loop (`fmri_encoders.training`) under
`work_dir/<name>/<stage>` with `--resume` read in one place, and samples in batches with one generator per
(sample k, trial i). Its own row is the posterior mean of `n_samples` samples and `<name>-1` one sample; no
sample is ever chosen by comparing it with the truth. A fitted method saves itself to
`work_dir/<name>/<saved_as>` in one schema (MANIFEST_FILE: method, image size, sampling settings, and what
its parts add) that `load_method` reads back; where validation chose among several values of a setting it
fits by (a network's width), its stages and saved method sit in `work_dir/<name>/final/<setting>-<value>/`.
Before the method's own fitting, `fit` chooses the run's `--choose` grid on validation stimuli held out of
the training trials (methods.validation) and, under likelihood guidance, fits the encoding model whose
likelihood steers every sampling step (or, for a method that samples in one pass, weighs its samples:
methods.reweighting); a pipeline's samples may be weighed by it too (`sample_weight`), after guidance. A
subclass supplies `fit_parts` (first stage, trainable parts, pipeline), `sampling_inputs` (its per-trial
conditioning) and its parts' save/load; pipeline-less models override `draw`. The method's own row goes
through the readout chosen on validation (fmri_data.readout; none unless `--choose readout=...` asks);
`<name>-1` stays one raw sample.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from copy import copy
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from fmri_data.corpora import detect_patch_grid
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_data.methods.registry import method_class
from fmri_data.readout import NO_DESIGN, PatchReadout
from fmri_diffusion.methods.reweighting import importance_weights, weighted_rows
from fmri_diffusion.methods.validation import choice_grid, choose_on_validation, final_fit_stage
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.priors.loading import BaseModelError
from fmri_diffusion.schedulers import most_sampling_steps
from fmri_encoders.encoding import EncodingModel
from fmri_encoders.noise import check_noise_models
from fmri_encoders.persistence import load_settings, save_settings
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import derived_seed, on_main_process, resolve_device, ridge_backend, shared_out
from fmri_encoders.training import TrainingConfig, loss_curves, scaled_steps, training_for
from fmri_eval.atomic import atomic_output_dir

MANIFEST_FILE = "method.json"
SAVED_SAMPLING = (
    "strength",
    "num_inference_steps",
    "guidance_scale",
    "n_samples",
    "sampler",
    "likelihood_weight",
    "sample_weight",
    "encoding_model",
    "encoding_noise",
    "langevin_steps",
    "langevin_step_size",
)
"""The sampling settings a saved method keeps (those its config has): it samples as it was run."""


class DiffusionMethod(ReconstructionMethod):
    """fit: choices, encoding model, then the subclass's fit_parts; predict: posterior mean and one sample of
    `config.n_samples` batched draws.

    config_class: the method's config dataclass (with `quick()`, `n_samples` and `sample_batch_size`).
    curves: artefact name -> attribute holding the TrainingResult whose loss curve the run report carries.
    saved_as: the folder under work_dir/<name> that `fit` saves the fitted method to.
    """

    config_class: ClassVar[type[Any]]
    curves: ClassVar[dict[str, str]] = {"loss_curve": "training_"}
    saved_as: ClassVar[str] = "model"
    samples_with_pipeline: ClassVar[bool] = True
    """Whether predictions come from the diffusion pipeline, so that likelihood guidance can steer its
    steps; a method sampling in one pass is guided by weighing its samples (methods.reweighting)."""
    samples_pretrained: ClassVar[bool] = False
    """Whether its pipeline samples with a user's `--pretrained` model (and that model's scheduler)."""
    sampling_settings: ClassVar[frozenset[str]] = frozenset(
        {
            "strength",
            "num_inference_steps",
            "guidance_scale",
            "n_samples",
            "sample_batch_size",
            "likelihood_weight",
            "sample_weight",
            "decode",
            "mixing",
            "encoding_noise",
        }
    )
    """Config fields a fitted method can change at predict time, so that choosing among their values on
    validation samples one probe under each (what a value needs fitted, the probe fits: validation._widest).
    Every other field (a network's size, a loss weight, the encoding model, the sampler a pipeline is built
    with): one probe is fitted per value, so no setting is ever chosen on a probe that ignored it."""
    posterior_settings: ClassVar[frozenset[str]] = frozenset({"sample_weight"})
    """Sampling settings that act on the drawn samples only (how `rows_from` weighs them): validation
    scores every value of them on one set of samples."""
    step_fraction: float = 1.0
    """The fraction of each per-fold training stage's steps this fit trains for: below 1 for a probe that
    chooses settings on validation (MethodSettings.probe_steps), or for a final fit that starts from the
    probe's weights (MethodSettings.refit_steps)."""
    starts_from_probe: ClassVar[bool] = False
    """Whether fit_parts can start each per-fold stage from the weights of the probe fitted to choose on
    validation (`warm_start_`), so that `refit_steps` below 1 shortens the final fit."""

    def __init__(self, settings: MethodSettings | None = None, config: Any = None) -> None:
        super().__init__(settings)
        self.config = self.settings.configure(config if config is not None else self.config_class())
        offered = tuple(self.settings.choices.get("encoding_noise", ()))
        check_noise_models((self.config.encoding_noise, *offered), "encoding_noise")  # before any training
        self.encoding_: EncodingModel | None = None
        self.validation_: dict[str, Any] | None = None
        self.readout_: PatchReadout | None = None
        self.warm_start_: DiffusionMethod | None = None
        self.final_stage_: tuple[str, ...] = ()  # the final fit's folder under the method's (fit)
        self.colour_ = False  # RGB [n, H, W, 3] images, where the training images were (fit, load)

    @classmethod
    def settings_to_choose(cls) -> frozenset[str]:
        """Every field of the config, and the readout (validation.requested_readouts)."""
        return frozenset(f.name for f in fields(cls.config_class)) | {"readout"}

    @classmethod
    def predict_time_settings(cls) -> frozenset[str]:
        """The sampling settings, and the readout (fitted on the validation samples each fit draws)."""
        return cls.sampling_settings | {"readout"}

    @classmethod
    def fits_each_choice_apart(cls) -> bool:
        """Yes: each chosen value of a setting it fits by has its final fit's own folder (stage_dir)."""
        return True

    def ridge_options(self) -> dict[str, Any]:
        """The first-stage ridges' seed and backend (fitted or loaded): himalaya's torch_cuda where the run
        is on a GPU, numpy elsewhere."""
        return {"seed": self.settings.seed, "backend": ridge_backend(self.settings.device)}

    def load_ridge(self, folder: Path) -> RidgeEncoder:
        """A saved first-stage ridge, on the run's own device (see ridge_options)."""
        return RidgeEncoder.load(folder, backend=self.ridge_options()["backend"])

    # ---------------------------------------------------------------- fitting
    def check_stimuli(self, stimuli: PairedDataset) -> None:
        """The grid of settings to choose from holds a point this method's config accepts (else each
        method's fit would refuse it when it starts, after the methods before it trained), and an encoding
        model of pRFs, at any point that guides or weighs by its likelihood, has the patch design it needs
        (else the fit of the encoding model refuses it, after validation trained its probes)."""
        grid = choice_grid(self) or [{}]
        self._check_sampling_steps(grid)
        if (
            any(self._likelihood_of_prfs(point) for point in grid)
            and detect_patch_grid(stimuli.images) is None
        ):
            offered = "prf" in self.settings.choices.get("encoding_model", ())
            fix = "drop prf from --choose encoding_model" if offered else "use --encoding-model ridge or auto"
            raise DataError(
                f"{self.name}: encoding model prf needs K x K binary-patch stimuli, and {NO_DESIGN}; {fix}"
            )

    def refusal_fix(self, setting: str, choose: str, option: str) -> str:
        """What a one-line refusal of `setting` tells the user to change: `choose` (the `--choose` grid's
        values) where the grid offers it, since its values replace the option's, else `option`."""
        return choose if setting in self.settings.choices else option

    def offered(self, setting: str) -> tuple[Any, ...]:
        """The values of `setting` a fit may use: the `--choose` grid's, which replace the configured one,
        else the configured one."""
        return tuple(self.settings.choices.get(setting) or (getattr(self.config, setting),))

    def largest_offered(self, setting: str) -> float:
        """The largest of the values `offered` (None, "auto", counts as 0)."""
        return max((value for value in self.offered(setting) if value is not None), default=0)

    def _check_sampling_steps(self, grid: list[dict[str, Any]]) -> None:
        """The sampling steps, set or offered, within what its scheduler can take (schedulers.
        most_sampling_steps: the built-in schedule's, or the user's model folder's where the method samples
        with it; the apps resolve a Hugging Face id to its cached folder first), else the first sampling
        refuses them, after training."""
        if not self.samples_with_pipeline:
            return
        steps = max(point.get("num_inference_steps", self.config.num_inference_steps) for point in grid)
        pretrained = self.settings.pretrained if self.samples_pretrained else None
        limit = most_sampling_steps(None if pretrained is None else Path(pretrained).expanduser())
        if steps > limit:
            fix = self.refusal_fix(
                "num_inference_steps",
                f"drop the values above {limit} from --choose num_inference_steps",
                f"use --steps {limit} or fewer",
            )
            raise DataError(
                f"{self.name}: {steps} sampling steps, but its scheduler takes at most {limit}; {fix}"
            )

    def _likelihood_of_prfs(self, point: dict[str, Any]) -> bool:
        """Whether sampling under this grid point uses an encoding model of pRFs."""
        probe = copy(self)
        probe.config = replace(self.config, **point)
        return getattr(probe.config, "encoding_model", "auto") == "prf" and probe.needs_encoding()

    def refuse_without_patch_design(self, images: np.ndarray, setting: str, value: str, instead: str) -> None:
        """Refuse `setting` `value`, set or offered to validation, where the stimuli are not K x K binary
        patches, in one line (for check_stimuli). `instead` says what to set."""
        if value in self.offered(setting) and detect_patch_grid(images) is None:
            fix = self.refusal_fix(setting, f"drop {value} from --choose {setting}", instead)
            raise DataError(
                f"{self.name}: {setting} {value} needs K x K binary-patch stimuli, and {NO_DESIGN}; {fix}"
            )

    def fit(self, train: PairedDataset) -> Self:
        """Check the stimuli (check_stimuli), choose sampling settings on validation stimuli (with
        `settings.choices`), fit the encoding model (with likelihood guidance), fit the method's own parts,
        save it all."""
        self.check_stimuli(train)
        self.image_size_, self.colour_ = train.image_shape[0], train.is_colour
        if self.colour_ and self.needs_encoding():
            raise colour_likelihood_error(self.name)
        self.final_stage_ = ()
        if self.settings.choices:
            started = time.perf_counter()
            warm = self.starts_from_probe and self.settings.refit_steps < 1
            self.validation_, probe = choose_on_validation(self, train, keep_probe=warm)
            self.validation_seconds_ = time.perf_counter() - started
            chosen = {k: v for k, v in self.validation_["chosen"].items() if k != "readout"}
            self.config = replace(self.config, **chosen)
            self.final_stage_ = final_fit_stage(self, chosen)
            if self.validation_.get("readout"):
                self.readout_ = PatchReadout(**self.validation_["readout"])
            self._start_from(probe)
            del probe  # kept, where kept, as warm_start_ until its weights are copied
        if self.needs_encoding():
            self.fit_encoding(train)
        self.fit_parts(train)
        self.warm_start_ = None  # its weights are copied; the probe itself is not kept
        self.save_fitted()
        return self

    def fit_encoding(self, train: PairedDataset) -> None:
        """The encoding model whose likelihood guides or weighs the samples, fitted on training trials."""
        self.encoding_ = EncodingModel(self.config.encoding_voxels, self.config.encoding_model).fit(
            train.images, train.fmri, train.stimulus_id, seed=self.settings.seed
        )

    def _start_from(self, probe: DiffusionMethod | None) -> None:
        """Under refit_steps below 1, keep the probe to start the final fit from and train that share of
        the steps (where the method can, else afresh in full); the validation record says which."""
        refit = self.settings.refit_steps
        if refit == 1 or not self.validation_["grid"]:  # nothing was chosen, so no probe was fitted
            return
        if not self.starts_from_probe:
            self.validation_["final_fit"] = {"start": "afresh"}
            return
        self.validation_["final_fit"] = {"start": "probe", "step_fraction": refit}
        self.warm_start_, self.step_fraction = probe, refit

    @abstractmethod
    def fit_parts(self, train: PairedDataset) -> None:
        """The method's own training (first stage, trainable parts, pipeline) on the training trials."""

    def steers(self) -> bool:
        """Whether the encoding model's likelihood guides sampling (config.likelihood_weight > 0): it steers
        the pipeline's steps, or weighs the samples of a method without a pipeline."""
        return getattr(self.config, "likelihood_weight", 0.0) > 0

    def steers_steps(self) -> bool:
        """Whether the likelihood's gradient steers the pipeline's sampling steps (else, under steers(), it
        weighs the samples)."""
        return self.steers() and self.samples_with_pipeline

    def importance_temper(self) -> float:
        """The temper of the likelihood weights on the samples (0: their plain mean): the likelihood weight
        of a method that samples in one pass; `sample_weight` of a pipeline's samples, which the likelihood
        may have steered already (guidance moves each sample towards the measured voxels, weighing then
        favours the samples it moved furthest)."""
        if self.steers() and not self.steers_steps():
            return self.config.likelihood_weight
        return getattr(self.config, "sample_weight", 0.0)

    def needs_encoding(self) -> bool:
        """Whether sampling uses the encoding model: to steer the steps or to weigh the samples."""
        return self.steers() or self.importance_temper() > 0

    def records(self) -> dict[str, Any]:
        return {} if self.validation_ is None else {"validation": self.validation_}

    def timings(self) -> dict[str, float]:
        return {} if self.validation_ is None else {"validation": self.validation_seconds_}

    def stage_dir(self, *stage: str) -> Path | None:
        """Where a training stage keeps checkpoints and curves: work_dir/<name>/<stage>, in the final fit's
        own folder where validation chose among settings it fits by (validation.final_fit_stage); None:
        nowhere."""
        work_dir = self.settings.work_dir
        return None if work_dir is None else work_dir.joinpath(self.name, *self.final_stage_, *stage)

    def checkpointing(self, *stage: str) -> dict[str, Any]:
        """The loop's `out_dir` and `resume` for a stage: the one place a method reads `--resume`."""
        out_dir = self.stage_dir(*stage)
        resume = "latest" if self.settings.resume and out_dir is not None else None
        return {"out_dir": out_dir, "resume": resume}

    def training(self, config: TrainingConfig) -> TrainingConfig:
        """A stage's training config under this run: its seed, device, progress and tracker, and the share
        of the steps a probe, or a final fit starting from one, trains for (step_fraction)."""
        return scaled_steps(training_for(config, self.settings), self.step_fraction)

    def make_pipeline(self, **parts: Any) -> FmriImagePipeline:
        """The sampling pipeline on the run's device, its progress bar shown as the run shows bars."""
        pipeline = FmriImagePipeline(**parts)
        pipeline.set_progress_bar_config(
            disable=None if self.settings.shows_progress() else True,
            leave=False,
            desc=f"{self.name} sampling",
        )
        return pipeline.to(resolve_device(self.settings.device))

    def artefacts(self) -> dict[str, Path]:
        return loss_curves(
            **{name: getattr(self, attribute, None) for name, attribute in self.curves.items()}
        )

    # ------------------------------------------------------------ persistence
    def save_fitted(self) -> None:
        """Save the fitted method under work_dir (staged, then renamed: never half-written; by the main
        process alone under `accelerate launch`)."""
        if self.settings.work_dir is None:
            return

        def write() -> None:
            with atomic_output_dir(self.stage_dir(self.saved_as)) as staging:
                self.save(staging)

        on_main_process(write)

    def save(self, folder: Path) -> None:
        """Everything `predict` needs in `folder`, and the manifest that `load` reads first."""
        names = {f.name for f in fields(self.config)}
        manifest = {
            "method": self.name,
            "image_size": self.image_size_,
            "colour": self.colour_,
            "sampling": {name: getattr(self.config, name) for name in SAVED_SAMPLING if name in names},
            "encoding": self.encoding_ is not None,
            "readout": None if self.readout_ is None else self.readout_.to_dict(),
            **self.save_parts(folder),
        }
        if self.encoding_ is not None:
            self.encoding_.save(folder / "encoding")
        save_settings(folder / MANIFEST_FILE, manifest)

    @classmethod
    def load(
        cls, folder: str | Path, settings: MethodSettings | None = None, *, base: str | Path | None = None
    ) -> Self:
        """A fitted method from a folder `save` wrote. It samples with the saved run's settings unless
        `settings.sampling` overrides them; `base` replaces the base model the manifest names."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest["method"] != cls.name:
            raise BaseModelError(
                f"{folder} holds {manifest['method']} {cls.saved_as}; load them with that method"
            )
        method = cls((settings or MethodSettings()).for_method(cls.name))
        overrides = {k: v for k, v in method.settings.sampling.items() if k in manifest["sampling"]}
        method.config = replace(method.config, **(manifest["sampling"] | overrides))  # as run, unless told
        method.image_size_, method.colour_ = manifest["image_size"], manifest.get("colour", False)
        if manifest.get("readout"):
            method.readout_ = PatchReadout(**manifest["readout"])
        if manifest.get("encoding"):
            method.encoding_ = EncodingModel.load(folder / "encoding")
            if method.needs_encoding():  # before any sampling, not at its first likelihood
                method.encoding_.check_noise(method.config.encoding_noise)
        elif method.needs_encoding():
            raise DataError(
                f"{folder} was fitted without an encoding model, so it cannot sample with likelihood "
                "guidance or weights; load it with --likelihood-weight 0 and --sample-weight 0, or refit "
                "it with a weight above 0"
            )
        method.load_parts(folder, manifest, base)
        return method

    @abstractmethod
    def save_parts(self, folder: Path) -> dict[str, Any]:
        """Write the fitted parts into `folder`; return what the manifest should record about them."""

    @abstractmethod
    def load_parts(self, folder: Path, manifest: dict[str, Any], base: str | Path | None) -> None:
        """Read back what save_parts wrote."""

    # -------------------------------------------------------------- sampling
    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        """named_rows, the method's own row read out as chosen on validation."""
        rows = self.named_rows(fmri)
        if self.readout_ is not None:
            rows[self.name] = self.readout_(rows[self.name])
        return rows

    def named_rows(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        """The rows of `n_samples` samples of each trial (rows_from)."""
        return self.rows_from(self.sample(fmri, self.config.n_samples), fmri)

    def rows_from(self, samples: np.ndarray, fmri: np.ndarray) -> dict[str, np.ndarray]:
        """The posterior mean of samples [K, n, H, W] (or [K, n, H, W, 3]) as the method's own row, one
        sample as <name>-1 (under likelihood weights, the weighted mean and one sample drawn by its
        weight)."""
        if (temper := self.importance_temper()) > 0:
            weights = importance_weights(samples, fmri, self.encoding_, temper, self.config.encoding_noise)
            mean, one = weighted_rows(samples, weights, self.settings.seed)
            return {self.name: mean, f"{self.name}-1": one}
        return {self.name: samples.mean(axis=0), f"{self.name}-1": samples[0]}

    def sample(self, fmri: np.ndarray, n_samples: int) -> np.ndarray:
        """[n_samples, n, H, W] (colour: [..., 3]) in [0, 1]; sample k of trial i has its own generator (see
        sample_generators), so neither the batch size nor the device's batching changes a draw, and under
        `accelerate launch` the batches are shared out among the processes."""
        n = len(fmri)
        per_trial = self.sampling_inputs(fmri)
        if self.steers_steps():
            per_trial["measured"] = torch.from_numpy(self.encoding_.measured(fmri))
        inputs = {key: value.repeat(n_samples, *(1,) * (value.dim() - 1)) for key, value in per_trial.items()}
        generators = sample_generators(self.settings.seed, n_samples, n)
        batch = self.config.sample_batch_size
        chunks = shared_out(
            range(0, n * n_samples, batch),
            lambda start: self.draw(
                {key: value[start : start + batch] for key, value in inputs.items()},
                generators[start : start + batch],
            ),
        )
        size = self.image_size_
        shape = (size, size, 3) if self.colour_ else (size, size)
        return np.concatenate(chunks).reshape(n_samples, n, *shape).astype(np.float32)

    @abstractmethod
    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        """The per-trial conditioning of `fmri` ([n, ...] tensors), by the name `draw` takes it under."""

    def draw(self, inputs: dict[str, torch.Tensor], generators: list[torch.Generator]) -> np.ndarray:
        """Images [b, H, W] (colour: [b, H, W, 3]) in [0, 1] for one batch of inputs, one generator each:
        the pipeline's sampler."""
        config, device = self.config, self.pipeline_.device
        options = {
            "num_inference_steps": config.num_inference_steps,
            "guidance_scale": config.guidance_scale,
            "strength": config.strength,
            **self.sampling_options(),
            **self._likelihood_options(),
        }
        return self.pipeline_(
            **{key: value.to(device) for key, value in inputs.items()},
            **options,
            image_size=self.image_size_,
            generator=generators,
        )

    def sampling_options(self) -> dict[str, Any]:
        """Pipeline settings a method adds to every batch, or sets its own way (e.g. Brain-Diffuser's
        caption mixing, and its route's default guidance)."""
        return {}

    def _likelihood_options(self) -> dict[str, Any]:
        if not self.steers_steps():
            return {}
        return {
            "likelihood": self.encoding_.likelihood(self.config.encoding_noise),
            "likelihood_weight": self.config.likelihood_weight,
        }


def colour_likelihood_error(name: str) -> DataError:
    """Likelihood guidance or sample weights asked of colour data: the encoding model reads grayscale."""
    return DataError(
        f"{name}: likelihood guidance and weights read grayscale images, and these are in colour; leave "
        "--likelihood-weight and --sample-weight at 0 (and out of --choose), or load the data in grayscale"
    )


def sample_generators(seed: int, n_samples: int, n_trials: int) -> list[torch.Generator]:
    """One generator per (sample k, trial i), k-major, seeded from (seed, k, i) through SeedSequence: reruns
    repeat exactly, on any platform and Python version."""
    return [
        torch.Generator().manual_seed(derived_seed(seed, k, i))
        for k in range(n_samples)
        for i in range(n_trials)
    ]


def read_manifest(folder: Path) -> dict[str, Any]:
    if not (folder / MANIFEST_FILE).is_file():
        raise DataError(f"{folder}: no {MANIFEST_FILE}; pass a folder a fitted method was saved to")
    return load_settings(folder / MANIFEST_FILE)


def load_method(
    folder: str | Path, settings: MethodSettings | None = None, *, base: str | Path | None = None
) -> DiffusionMethod:
    """Any saved method, its class found by the name in its manifest (see DiffusionMethod.load)."""
    name = read_manifest(Path(folder))["method"]
    return method_class(name).load(folder, settings, base=base)
