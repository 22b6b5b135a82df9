"""The fMRI latent-diffusion job behind apps/fmri_ldm.py: a YAML config in, a trained model and a report out.

    data: sim | digit69 | miyawaki | a .mat file | an aligned .npz (subject -> [n_timepoints, n_voxels])
    seed: 0
    device: auto
    model: {latent_dim, hidden, dropout, beta, denoiser_width, denoiser_blocks, schedule, sampler,
            num_inference_steps}
    training: {vae_steps, ddpm_steps, batch_size, learning_rate, mixed_precision}

`sim` is three simulated subjects with different pRFs and voxel counts, ridge-aligned into the first one's
voxel space on training trials only (the aligned set is written to aligned.npz). Held-out patterns are the
test trials of the data set's split, or, for an aligned .npz (which has no stimulus ids), the last fifth
of each subject's time points.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import yaml

from fmri_data.alignment import RidgeAlignment, load_aligned_npz, save_aligned_npz
from fmri_data.errors import DataError
from fmri_data.io import load_dataset
from fmri_data.preprocessing import VoxelStandardizer
from fmri_data.simulator import simulate_subjects
from fmri_data.splits import make_splits
from fmri_diffusion.schedulers import Sampler, Schedule
from fmri_diffusion.voxel_ldm import FmriLDM, FmriLDMConfig, evaluate_fmri_ldm, train_fmri_ldm
from fmri_eval.figures import embedding_scatter, pattern_comparison

_COUNT, _NUMBER, _TEXT, _COUNTS = (
    "a whole number >= 1",
    "a number",
    "a string",
    "a list of whole numbers >= 1",
)
_MODEL_TYPES = {
    "latent_dim": _COUNT,
    "hidden": _COUNTS,
    "dropout": _NUMBER,
    "beta": _NUMBER,
    "denoiser_width": _COUNT,
    "denoiser_blocks": _COUNT,
    "schedule": _TEXT,
    "sampler": _TEXT,
    "num_inference_steps": _COUNT,
}
_TRAINING_TYPES = {
    "vae_steps": _COUNT,
    "ddpm_steps": _COUNT,
    "batch_size": _COUNT,
    "learning_rate": _NUMBER,
    "mixed_precision": _TEXT,
}
_SEED = "a whole number >= 0"
_TOP_TYPES = {"data": _TEXT, "seed": _SEED, "device": _TEXT}
_CHOICES = {
    "schedule": get_args(Schedule),
    "sampler": get_args(Sampler),
    "mixed_precision": ("no", "fp16", "bf16"),
    "device": ("auto", "cpu", "cuda"),
}


def _is_whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _typed(value: Any, expected: str, key: str, where: str) -> Any:
    """`value` as the setting at `where` needs it, or a DataError naming the setting, the type and the value.

    Numbers may be written as YAML strings ("1e-3" is one in YAML 1.1); nothing else is converted.
    """
    if expected == _COUNT and _is_whole(value, 1):
        return value
    if expected == _SEED and _is_whole(value, 0):
        return value
    if expected == _COUNTS and isinstance(value, list) and value and all(_is_whole(v, 1) for v in value):
        return tuple(value)
    if expected == _TEXT and isinstance(value, str):
        if key in _CHOICES and value not in _CHOICES[key]:
            raise DataError(f"{where} must be one of {list(_CHOICES[key])}, got {value!r}")
        return value
    if expected == _NUMBER and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if math.isfinite(number) and number >= 0 and (key != "dropout" or number < 1):
            return number
        expected = "a number in [0, 1)" if key == "dropout" else "a finite number >= 0"
    raise DataError(f"{where} must be {expected}, got {value!r}")


def _section(raw: Any, types: Mapping[str, str], where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DataError(f"{where} must be a mapping of settings, got {raw!r}")
    _check_keys(raw, set(types), where)
    return {key: _typed(value, types[key], key, f"{where}.{key}") for key, value in raw.items()}


@dataclass(frozen=True)
class JobConfig:
    data: str = "sim"
    seed: int = 0
    device: str = "auto"
    model: FmriLDMConfig = field(default_factory=FmriLDMConfig)


def load_config(path: str | Path) -> JobConfig:
    """Read and check a YAML config; unknown keys are errors (a typo must not silently use a default)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such config file; check the path")
    text = path.read_text()
    if not text.strip():
        raise DataError(
            f"{path}: the config is empty; write its settings (the example: apps/configs/fmri_ldm.yaml)"
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from error
    if not isinstance(raw, Mapping):
        raise DataError(f"{path}: the config must be a mapping of settings, got {type(raw).__name__}")
    return config_from_mapping(raw, source=str(path))


def config_from_mapping(raw: Mapping[str, Any], source: str = "config") -> JobConfig:
    """A JobConfig from parsed YAML: unknown keys and wrongly typed values are refused, naming the key."""
    _check_keys(raw, {*_TOP_TYPES, "model", "training"}, source)
    top = {
        key: _typed(raw[key], expected, key, f"{source}: {key}")
        for key, expected in _TOP_TYPES.items()
        if key in raw
    }
    model_settings = _section(raw.get("model"), _MODEL_TYPES, f"{source}: model")
    training = _section(raw.get("training"), _TRAINING_TYPES, f"{source}: training")
    model = replace(FmriLDMConfig(), **model_settings)
    shared = {k: training[k] for k in ("batch_size", "mixed_precision", "learning_rate") if k in training}
    model = replace(
        model,
        vae_training=replace(model.vae_training, **shared, max_steps=training.get("vae_steps", 2000)),
        ddpm_training=replace(model.ddpm_training, **shared, max_steps=training.get("ddpm_steps", 3000)),
    )
    return JobConfig(model=model, **top)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown setting(s) {unknown}; allowed: {sorted(allowed)}")


def prepare_data(config: JobConfig, out_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(training patterns, held-out patterns, where they came from), z-scored on the training ones."""
    if config.data == "sim":
        train, test, note = _aligned_simulation(config.seed, out_dir)
    elif config.data.endswith(".npz") and not _holds_paired_trials(Path(config.data)):
        train, test, note = _aligned_file(config.data)
    else:
        dataset = load_dataset(config.data)
        split = "given" if dataset.given_test is not None and config.data != "miyawaki" else "kfold:5"
        fold = make_splits(dataset, split, seed=config.seed)[0]
        train, test = dataset.fmri[fold.train], dataset.fmri[fold.test]
        note = f"{dataset.name}: {len(train)} training and {len(test)} held-out trials ({split}, first fold)"
    standardizer = VoxelStandardizer().fit(train)
    return standardizer.transform(train), standardizer.transform(test), note


def _holds_paired_trials(path: Path) -> bool:
    """Whether an .npz is a paired data set (fmri + images) rather than aligned subjects' responses."""
    if not path.is_file():
        raise DataError(f"{path}: no such data file; check the config's data (or --data)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return "fmri" in archive.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz ({error}); re-save it") from None


def _aligned_simulation(seed: int, out_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    subjects = simulate_subjects(3, seed=seed)
    reference_name, reference = next(iter(subjects.items()))
    is_train = ~reference.given_test
    aligned = {}
    for name, subject in subjects.items():
        scaled = VoxelStandardizer().fit(subject.fmri[is_train]).transform(subject.fmri)
        if name == reference_name:
            target = scaled
            aligned[name] = scaled
        else:
            aligned[name] = RidgeAlignment().fit(scaled[is_train], target[is_train]).transform(scaled)
    if out_dir is not None:  # written once the data are ready: a failed preparation leaves no --out behind
        out_dir.mkdir(parents=True, exist_ok=True)
        save_aligned_npz(out_dir / "aligned.npz", aligned)
    train = np.concatenate([a[is_train] for a in aligned.values()])
    test = np.concatenate([a[~is_train] for a in aligned.values()])
    note = (
        f"3 simulated subjects ({', '.join(str(s.n_voxels) for s in subjects.values())} voxels) "
        f"ridge-aligned to {reference_name} on training trials; {len(train)} training and {len(test)} "
        "held-out patterns"
    )
    return train, test, note


def _aligned_file(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    responses = load_aligned_npz(path)
    widths = {a.shape[1] for a in responses.values()}
    if len(widths) != 1:
        raise DataError(f"{path}: subjects have {sorted(widths)} voxels; align them to one space first")
    cut = {name: int(len(a) * 0.8) for name, a in responses.items()}
    train = np.concatenate([a[: cut[n]] for n, a in responses.items()])
    test = np.concatenate([a[cut[n] :] for n, a in responses.items()])
    return (
        train,
        test,
        f"{path}: {len(responses)} subjects; the last fifth of each one's time points held out",
    )


def run_job(
    config: JobConfig, mode: str, out_dir: Path, checkpoint: Path | None = None, progress: bool = True
) -> dict[str, float] | None:
    """train: fit and save to out_dir/model; evaluate: load `checkpoint` (default out_dir/model) and report;
    both: the two in turn. Returns the metrics when it evaluated."""
    if mode not in ("train", "evaluate", "both"):
        raise DataError(f"unknown mode {mode!r}; use train, evaluate or both")
    given = FmriLDM.load(checkpoint or out_dir / "model") if mode == "evaluate" else None  # fails early
    train, test, note = prepare_data(config, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if mode in ("train", "both"):
        train_fmri_ldm(
            train,
            test,
            config.model,
            seed=config.seed,
            device=config.device,
            out_dir=out_dir,
            progress=progress,
        )
    if mode == "train":
        return None
    model = given or FmriLDM.load(checkpoint or out_dir / "model")
    metrics = evaluate_fmri_ldm(model, train, test, seed=config.seed)
    _write_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    pattern_comparison(out_dir / "reconstruction.png", test, model.reconstruct(test))
    generated = model.generate(len(test), seed=config.seed)
    embedding_scatter(
        out_dir / "latent_pca.png",
        {
            "training": model.encode(train),
            "held out": model.encode(test),
            "generated": model.encode(generated),
        },
    )
    _write_atomically(out_dir / "report.md", _report(metrics, note))
    return metrics


def _report(metrics: Mapping[str, float], note: str) -> str:
    rows = [
        (
            "voxel-wise r (mean)",
            "vae_reconstruction/pearson_voxelwise_mean",
            "pca_reconstruction/pearson_voxelwise_mean",
        ),
        ("R²", "vae_reconstruction/r2", "pca_reconstruction/r2"),
        ("MSE", "vae_reconstruction/mse", "pca_reconstruction/mse"),
    ]
    lines = [
        "# fMRI latent diffusion",
        "",
        note,
        "",
        "## Reconstruction of held-out patterns",
        "",
        "| metric | VAE | PCA (same latent size) |",
        "| --- | --- | --- |",
        *(f"| {label} | {metrics[a]:.4f} | {metrics[b]:.4f} |" for label, a, b in rows),
        "",
        "## Generated patterns vs held-out patterns",
        "",
        "| metric | latent DDPM | Gaussian (training mean, covariance) |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {metrics['generated/' + name]:.4f} | {metrics['gaussian/' + name]:.4f} |"
            for name in (
                "ks_statistic",
                "jsd",
                "correlation_structure_r",
                "mean_difference",
                "std_difference",
            )
        ),
        "",
        "Figures: reconstruction.png, latent_pca.png; training curves in vae-training/ and ddpm-training/.",
        "",
    ]
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
