"""The report of a model of the fMRI itself (a voxel VAE + latent DDPM, scored by `fmri_metrics`).

Writes into its output folder: metrics.json (a flat mapping of metric name to value), reconstruction.png,
latent_pca.png and report.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from numpy.typing import ArrayLike

from fmri_eval.atomic import atomic_write_text
from fmri_eval.figures import distribution_comparison, embedding_scatter, pattern_comparison

_RECONSTRUCTION_ROWS = (
    ("voxel-wise r (mean)", "pearson_voxelwise_mean"),
    ("R²", "r2"),
    ("MSE", "mse"),
)
_DISTRIBUTION_METRICS = (
    "ks_statistic",
    "jsd",
    "correlation_structure_r",
    "mean_difference",
    "std_difference",
)

_GENERATORS = (
    ("generated", "latent DDPM, calibrated"),
    ("generated_raw", "latent DDPM, raw"),
    ("gaussian", "Gaussian (training mean, covariance)"),
    ("training_resampled", "training patterns resampled (a ceiling)"),
)


def finite_or_null(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """The metrics with every NaN or infinity as None (JSON null).

    Null rather than an error: a non-finite value is a property of the data, not a failed run (R² is NaN
    when the held-out patterns do not vary, a PSNR infinite when a reconstruction is exact), and refusing it
    would throw away a trained model's whole evaluation. Null rather than NaN: metrics.json stays JSON that
    every parser reads, as every other report of the project does (allow_nan=False).
    """
    return {name: value if math.isfinite(value) else None for name, value in metrics.items()}


def render_fmri_report(metrics: Mapping[str, float], description: str) -> str:
    """report.md: the VAE against PCA on held-out patterns, the DDPM against a Gaussian in distribution."""
    return "\n".join(
        [
            "# fMRI latent diffusion",
            "",
            description,
            "",
            "## Reconstruction of held-out patterns",
            "",
            "| metric | VAE | PCA (same latent size) |",
            "| --- | --- | --- |",
            *(
                f"| {label} | {metrics['vae_reconstruction/' + name]:.4f} | "
                f"{metrics['pca_reconstruction/' + name]:.4f} |"
                for label, name in _RECONSTRUCTION_ROWS
            ),
            "",
            *_distribution_table("Generated patterns vs held-out patterns", metrics, ""),
            *(
                _distribution_table(
                    "Generated patterns vs the shifted held-out set (another distribution than training)",
                    metrics,
                    "shifted/",
                )
                if "shifted/generated/jsd" in metrics
                else []
            ),
            "Calibrated: the draws' mean and covariance matched to the training latents', with the VAE's "
            "observation noise; raw: the decoded draws as they come. Mean ± std over repeated seeded draws.",
            "",
            "Figures: reconstruction.png, latent_pca.png, generated.png (value distributions and voxel-pair "
            "correlations against the held-out patterns); "
            "training curves in vae-training/ and ddpm-training/.",
            "",
        ]
    )


def _distribution_table(title: str, metrics: Mapping[str, float], prefix: str) -> list[str]:
    """Mean ± std over the repeated draws, for the generators the metrics hold."""
    columns = [(key, label) for key, label in _GENERATORS if f"{prefix}{key}/jsd" in metrics]

    def cell(key: str, name: str) -> str:
        spread = metrics.get(f"{prefix}{key}/{name}_sd")
        value = f"{metrics[f'{prefix}{key}/{name}']:.4f}"
        return value if spread is None else f"{value} ± {spread:.4f}"

    return [
        f"## {title}",
        "",
        "| metric | " + " | ".join(label for _, label in columns) + " |",
        "| --- |" + " --- |" * len(columns),
        *(
            f"| {name} | " + " | ".join(cell(key, name) for key, _ in columns) + " |"
            for name in _DISTRIBUTION_METRICS
        ),
        "",
    ]


def write_fmri_report(
    out_dir: str | Path,
    metrics: Mapping[str, float],
    description: str,
    *,
    held_out: ArrayLike,
    reconstruction: ArrayLike,
    latents: Mapping[str, ArrayLike],
    samples: Mapping[str, ArrayLike],
) -> Path:
    """Write metrics.json, the figures and report.md into `out_dir` (made if needed); returns report.md.

    held_out / reconstruction: [n, voxels] patterns and the model's reconstruction of them; latents: named
    groups of latent codes [n, latent] drawn together on their first two principal axes; samples: generated
    patterns [m, voxels] by generator key ("generated", "gaussian", ...), drawn against the held-out ones in
    generated.png.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out_dir / "metrics.json", json.dumps(finite_or_null(metrics), indent=2, allow_nan=False) + "\n"
    )
    pattern_comparison(out_dir / "reconstruction.png", held_out, reconstruction)
    embedding_scatter(out_dir / "latent_pca.png", latents)
    labels = dict(_GENERATORS)
    distribution_comparison(
        out_dir / "generated.png", held_out, {labels.get(key, key): value for key, value in samples.items()}
    )
    report = out_dir / "report.md"
    atomic_write_text(report, render_fmri_report(metrics, description))
    return report
