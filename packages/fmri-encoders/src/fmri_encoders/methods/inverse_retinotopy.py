"""The `inverse-retinotopy` method: Bayesian reconstruction of K x K binary-patch stimuli (Miyawaki's design)
from a pRF encoding model, an Ising prior and a linear decoder's evidence.

The encoding-model answer of this field (Thirion et al. 2006, "inverse retinotopy"; Naselaris et al. 2009):
fit what each voxel sees (fmri_encoders.prf), then ask which images would explain the measured voxels
(fmri_encoders.patch_posterior). It generalises where a linear decoder cannot: ridge's reconstructions lie
in the span of the ~16 distinct images a Miyawaki fold trains on, while a pRF judges any pattern of patches.
The linear decoder still knows things the pRFs miss, so its reconstruction, read out as per-patch evidence
(fmri_data.readout.PatchReadout, fitted on its stimulus-grouped out-of-fold reconstructions of the training
trials), multiplies into the same posterior. The voxels' noise is independent, or correlated as the pRFs'
residuals on the training trials are (Bayesian decoders of orientation model it so: van Bergen et al. 2015;
with a fold's trials repeating ~16 stimuli, those residuals hold the pRFs' stimulus-locked misfit as well as
trial noise). Which noise model, and how much each part counts (the pRF likelihood's weight, the decoder's
weight, the prior's coupling, the voxels kept), is chosen by stimulus-grouped cross-validation inside the
training trials, never on test trials; the grid, scores and choice go to metrics.json and report.md.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as config_fields
from itertools import product
from pathlib import Path
from typing import Any, Self

import numpy as np
from tqdm.auto import tqdm

from fmri_data.corpora import detect_patch_grid
from fmri_data.corpora.builtin import render_bilinear
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod
from fmri_data.readout import NO_DESIGN, PatchReadout, patch_values
from fmri_data.splits import group_kfold
from fmri_encoders.noise import NOISE_MODELS, check_noise_models, correlated_noise_precision
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.patch_posterior import IsingPrior, sample_patches
from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors
from fmri_encoders.prf import ReceptiveFields
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import ridge_backend
from fmri_eval.metrics import SELECTION_CRITERION, selection_score

CHOSEN = ("prf_weight", "decoder_weight", "coupling", "prf_voxels", "noise")
"""The config fields that hold candidate values, chosen on validation (each overridable by --choose; named
apart from the diffusion methods' likelihood_weight, a guidance strength, so one --choose never sets both)."""
MIN_STIMULI = 4
"""The inner folds' decoders need 2 training stimuli for their own grouped cross-validation."""
_SAVED_AS = "inverse_retinotopy"
"""The file name (.json settings, .safetensors arrays) a fitted method is saved under."""
_FIELD_ARRAYS = ("windows", "gains", "offsets", "explained", "noise")
"""The ReceptiveFields arrays saved beside the settings (its grid is a setting)."""


@dataclass(frozen=True)
class InverseRetinotopyConfig:
    """Candidates for the validation choice, and the Gibbs chain's length.

    prf_weight: the power of the pRF likelihood (0 leaves it out); decoder_weight: of the ridge decoder's
    per-patch evidence (0 leaves it out); coupling: the Ising prior's neighbour agreement; prf_voxels: how
    many of the voxels the pRFs explain best are kept (None or 0: all); noise: NOISE_MODELS.
    sweeps/burn_in: the chain for test trials; validation_sweeps/validation_burn_in: the shorter chain
    scoring the grid.
    validation_folds: stimulus-grouped folds of the training trials the grid is scored on.
    """

    prf_weight: tuple[float, ...] = (0.1, 0.3, 1.0)
    decoder_weight: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    coupling: tuple[float, ...] = (0.3, 0.6)
    prf_voxels: tuple[int | None, ...] = (300, None)
    noise: tuple[str, ...] = NOISE_MODELS
    sweeps: int = 200
    burn_in: int = 50
    validation_sweeps: int = 80
    validation_burn_in: int = 20
    validation_folds: int = 4

    def quick(self) -> InverseRetinotopyConfig:
        return replace(
            self,
            prf_weight=(0.3,),
            decoder_weight=(0.0, 1.0),
            coupling=(0.3,),
            prf_voxels=(None,),
            sweeps=30,
            burn_in=10,
            validation_sweeps=20,
            validation_burn_in=5,
        )


@dataclass(frozen=True)
class _Parts:
    """What one fit learned from its training trials: the pRFs, the ridge decoder, its patch readout and
    the fraction of patches on in the training images (the prior's fill); the pRFs' residuals on the
    training trials [n, voxels] (what correlates the voxels' noise; None in fits saved before it); the
    correlated noise's precision per voxel count, once computed (validation scores many settings with one)."""

    fields: ReceptiveFields
    decoder: RidgeEncoder
    readout: PatchReadout
    fill: float
    residuals: np.ndarray | None
    precisions: dict[int | None, np.ndarray] = field(default_factory=dict, compare=False)


class InverseRetinotopy(ReconstructionMethod):
    """Posterior mean of the binary patches given a trial's voxels; `<name>-1` is one posterior sample."""

    name = "inverse-retinotopy"

    def __init__(
        self, settings: MethodSettings | None = None, config: InverseRetinotopyConfig | None = None
    ) -> None:
        super().__init__(settings)
        config = self.settings.configure(config or InverseRetinotopyConfig())
        chosen = {key: values for key, values in self.settings.choices.items() if key in CHOSEN}
        self.config = _candidates(replace(config, **chosen))

    @classmethod
    def settings_to_choose(cls) -> frozenset[str]:
        """Its prior's and likelihood's weights, voxel count and noise model (CHOSEN), each a grid of its
        config."""
        return frozenset(CHOSEN)

    @classmethod
    def settings_read(cls) -> frozenset[str]:
        """Every field of its config (`configure` takes them from `MethodSettings.sampling`)."""
        return frozenset(f.name for f in config_fields(InverseRetinotopyConfig))

    def check_stimuli(self, stimuli: PairedDataset) -> None:
        """Its receptive fields and prior live on the stimuli's K x K patch grid."""
        self._patch_grid(stimuli.images)

    def _patch_grid(self, images: np.ndarray) -> int:
        grid = detect_patch_grid(images)
        if grid is None:
            raise DataError(f"{self.name}: {NO_DESIGN} (Miyawaki's design); use ridge or a generative method")
        return grid

    def fit(self, train: PairedDataset) -> InverseRetinotopy:
        grid = self._patch_grid(train.images)
        if train.n_stimuli < MIN_STIMULI:
            raise DataError(
                f"{self.name} needs at least {MIN_STIMULI} distinct training stimuli, got {train.n_stimuli}"
            )
        self.grid_, self.image_size_ = grid, train.image_shape[-1]
        started = time.perf_counter()
        self.validation_ = self._choose(train)
        self.validation_seconds_ = time.perf_counter() - started
        self.setting_ = self.validation_["chosen"]
        self.parts_ = self._learn(train)
        return self

    def predict(self, fmri: np.ndarray) -> np.ndarray:
        return self.predict_named(fmri)[self.name]

    def predict_named(self, fmri: np.ndarray) -> dict[str, np.ndarray]:
        mean, sample = self._sample(self.parts_, fmri, self.setting_, self.config.sweeps, self.config.burn_in)
        return {self.name: mean, f"{self.name}-1": sample}

    def records(self) -> dict[str, Any]:
        return {"validation": self.validation_}

    # -------------------------------------------------------------------- io
    def save(self, folder: str | Path) -> None:
        """Write what `predict` needs into `folder`: the choice, the pRFs, the decoder and its readout, so a
        method that starts from this one's reconstructions (the sd-* routes' `start`) reloads it."""
        folder = Path(folder)
        parts = self.parts_
        settings = {
            "grid": self.grid_,
            "image_size": self.image_size_,
            "setting": self.setting_,
            "sweeps": self.config.sweeps,
            "burn_in": self.config.burn_in,
            "fill": parts.fill,
            "readout": parts.readout.to_dict(),
            "validation": self.validation_,
        }
        arrays = {name: getattr(parts.fields, name) for name in _FIELD_ARRAYS}
        if parts.residuals is not None:  # a fit loaded from before the noise choice has none to save
            arrays["residuals"] = parts.residuals
        save_settings_and_tensors(folder, _SAVED_AS, settings, arrays)
        parts.decoder.save(folder / "decoder")

    @classmethod
    def load(cls, folder: str | Path, settings: MethodSettings | None = None) -> Self:
        """A fitted method from a folder `save` wrote; it samples with the saved chain's length and the
        settings' seed."""
        folder = Path(folder)
        saved, arrays = load_settings_and_tensors(folder, _SAVED_AS)
        method = cls(settings)
        method.config = replace(method.config, sweeps=saved["sweeps"], burn_in=saved["burn_in"])
        method.grid_, method.image_size_ = saved["grid"], saved["image_size"]
        method.setting_, method.validation_ = saved["setting"], saved["validation"]
        method.validation_seconds_ = 0.0
        receptive = ReceptiveFields(saved["grid"], **{name: arrays[name].numpy() for name in _FIELD_ARRAYS})
        decoder = RidgeEncoder.load(folder / "decoder", backend=ridge_backend(method.settings.device))
        residuals = arrays["residuals"].numpy() if "residuals" in arrays else None
        method.parts_ = _Parts(receptive, decoder, PatchReadout(**saved["readout"]), saved["fill"], residuals)
        return method

    def timings(self) -> dict[str, float]:
        return {"validation": self.validation_seconds_}

    def _learn(self, train: PairedDataset) -> _Parts:
        patches = patch_values(train.images, self.grid_)
        on = (patches > 0.5).astype(np.float64)
        held_out, decoder = out_of_fold_ridge(
            train.fmri,
            train.images,
            train.stimulus_id,
            seed=self.settings.seed,
            backend=ridge_backend(self.settings.device),
            per_target=False,
        )
        readout = PatchReadout.fit_out_of_fold(train.images, held_out)
        fields = ReceptiveFields.fit(on, train.fmri)
        residuals = train.fmri - fields.predict(on)
        return _Parts(fields, decoder, readout, float(on.mean()), residuals)

    def _sample(
        self, parts: _Parts, fmri: np.ndarray, setting: dict[str, Any], sweeps: int, burn_in: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rendered posterior mean and one sample, [n, H, H] each."""
        fields, kept = parts.fields.best(setting["prf_voxels"])
        evidence = None
        if setting["decoder_weight"] > 0:
            decoded = np.clip(parts.decoder.predict(fmri), 0, 1).reshape(len(fmri), *(self.image_size_,) * 2)
            evidence = setting["decoder_weight"] * parts.readout.evidence(decoded)
        precision = None
        if setting.get("noise", "independent") == "correlated":  # fits saved before it have no "noise"
            count = setting["prf_voxels"]
            if count not in parts.precisions:
                parts.precisions[count] = correlated_noise_precision(parts.residuals[:, kept], fields.noise)
            precision = parts.precisions[count]
        mean, sample = sample_patches(
            fmri[:, kept],
            fields,
            IsingPrior.from_fill(parts.fill, setting["coupling"]),
            likelihood_weight=setting["prf_weight"],
            evidence=evidence,
            noise_precision=precision,
            sweeps=sweeps,
            burn_in=burn_in,
            seed=self.settings.seed,
        )
        return (
            render_bilinear(mean, self.image_size_).astype(np.float32),
            render_bilinear(sample, self.image_size_).astype(np.float32),
        )

    def _choose(self, train: PairedDataset) -> dict[str, Any]:
        """Score every grid point on each stimulus-grouped fold of the training trials; keep the best mean."""
        config = self.config
        grid = [
            dict(zip(CHOSEN, point, strict=True)) for point in product(*(getattr(config, k) for k in CHOSEN))
        ]
        folds = _stimulus_folds(train, config.validation_folds, self.settings.seed)
        scores = np.zeros((len(folds), len(grid)))
        with tqdm(
            total=len(folds) * len(grid), desc=f"{self.name}: validation", disable=not self.settings.progress
        ) as bar:
            for row, (inner, held) in enumerate(folds):
                parts = self._learn(inner)
                for column, setting in enumerate(grid):
                    images, _ = self._sample(
                        parts, held.fmri, setting, config.validation_sweeps, config.validation_burn_in
                    )
                    scores[row, column] = selection_score(held.images, images)
                    bar.update()
        mean = scores.mean(axis=0)
        return {
            "grid": grid,
            "scores": [float(score) for score in mean],
            "chosen": grid[int(np.argmax(mean))],
            "criterion": f"{SELECTION_CRITERION}, averaged over {len(folds)} stimulus-grouped folds",
            "validation_stimuli": train.n_stimuli,
            "validation_trials": train.n_trials,
            "config": {key: value for key, value in asdict(config).items() if key not in CHOSEN},
        }


def _candidates(config: InverseRetinotopyConfig) -> InverseRetinotopyConfig:
    """Every chosen field as a tuple of candidates (a single value set by an option becomes one), voxel
    counts as ints with 0 meaning all."""
    fields = {
        key: tuple(value) if isinstance(value, tuple | list) else (value,)
        for key, value in ((key, getattr(config, key)) for key in CHOSEN)
    }
    check_noise_models(fields["noise"], "noise")
    if any(count is not None and (count < 0 or count != int(count)) for count in fields["prf_voxels"]):
        raise DataError(f"prf_voxels must be whole numbers, 0 (all) or more, got {fields['prf_voxels']}")
    fields["prf_voxels"] = tuple(int(count) if count else None for count in fields["prf_voxels"])
    return replace(config, **fields)


def _stimulus_folds(train: PairedDataset, k: int, seed: int) -> list[tuple[PairedDataset, PairedDataset]]:
    return [
        (train.subset(inner), train.subset(held))
        for inner, held in group_kfold(train.stimulus_id, min(k, train.n_stimuli), seed=seed)
    ]
