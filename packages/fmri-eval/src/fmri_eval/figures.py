"""PNG figures drawn on an Agg canvas, so they work on headless machines and never open a window.

matplotlib is imported when a figure is drawn, not with the package: model code that imports fmri_eval for
its metrics or its atomic folder writer does not load the figure stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from fmri_eval.errors import EvaluationError
from fmri_eval.validation import check_image_pair, check_images

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _new_figure(**kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(figure: Figure, path: str | Path, dpi: int, *, fit_text: bool = False) -> Path:
    """`fit_text`: grow or trim the canvas to what is drawn, so that no label is cut at its edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=dpi, bbox_inches="tight" if fit_text else None)
    return path


def reconstruction_grid(
    path: str | Path,
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    max_images: int = 20,
    cell_inches: float = 1.0,
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Save a grid: first row the seen images, then one labelled row per method (first max_images columns).

    Pixels are drawn with a fixed 0..1 scale (grayscale in grey, RGB in colour), so brightness is comparable
    across rows.
    """
    if max_images < 1:
        raise EvaluationError(f"max_images must be at least 1, got {max_images}; pass a positive count")
    truth_arr = check_images(truth, "truth")
    rows = {"truth": truth_arr}
    for name, images in reconstructions.items():
        rows[name] = check_image_pair(truth_arr, images, recon_name=f"reconstructions[{name!r}]")[1]
    n_cols = min(truth_arr.shape[0], max_images)
    label_inches = 1.2
    figure = _new_figure(figsize=(label_inches + n_cols * cell_inches, len(rows) * cell_inches + 0.4))
    axes = figure.subplots(len(rows), n_cols, squeeze=False)
    for row, (name, images) in enumerate(rows.items()):
        for col in range(n_cols):
            ax = axes[row, col]
            ax.imshow(images[col], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(
        left=label_inches / figure.get_figwidth(), right=0.99, bottom=0.01, wspace=0.05, hspace=0.05
    )
    return _save(figure, path, dpi)


def training_curve(
    path: str | Path,
    steps: ArrayLike,
    losses: ArrayLike,
    label: str = "loss",
    log_y: bool = False,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Save a loss-versus-step line plot; NaN losses show as gaps rather than being hidden."""
    steps_arr = np.asarray(steps, dtype=np.float64)
    losses_arr = np.asarray(losses, dtype=np.float64)
    if steps_arr.ndim != 1 or steps_arr.shape != losses_arr.shape or steps_arr.size == 0:
        raise EvaluationError(
            f"steps {steps_arr.shape} and losses {losses_arr.shape} must be equal-length non-empty 1-D "
            "arrays; pass one loss per step"
        )
    figure = _new_figure(figsize=(6, 4))
    ax = figure.add_subplot()
    ax.plot(steps_arr, losses_arr)
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path, dpi)


def pattern_comparison(
    path: str | Path, truth: ArrayLike, estimate: ArrayLike, *, n_rows: int = 8, dpi: int = 100
) -> Path:
    """Measured vs reconstructed patterns [n, d]: the first rows as heat maps, and all values as a scatter."""
    truth, estimate = np.asarray(truth, np.float64), np.asarray(estimate, np.float64)
    if truth.shape != estimate.shape or truth.ndim != 2:
        raise EvaluationError(
            f"pattern_comparison needs two [n, d] arrays of one shape, got {truth.shape}, {estimate.shape}"
        )
    shown = slice(0, min(n_rows, len(truth)))
    limit = float(np.abs(truth[shown]).max()) or 1.0
    figure = _new_figure(figsize=(12, 4))
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": [2, 2, 1.3]})
    for ax, data, title in ((axes[0], truth, "measured"), (axes[1], estimate, "reconstructed")):
        ax.imshow(data[shown], aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set(title=title, xlabel="voxel", ylabel="sample")
    axes[2].scatter(truth.ravel(), estimate.ravel(), s=1, alpha=0.2)
    axes[2].set(xlabel="measured", ylabel="reconstructed", title="all values")
    figure.tight_layout()
    return _save(figure, path, dpi)


def distribution_comparison(
    path: str | Path,
    reference: ArrayLike,
    samples: Mapping[str, ArrayLike],
    *,
    max_pairs: int = 4000,
    seed: int = 0,
    dpi: int = 100,
) -> Path:
    """Held-out patterns [n, d] against each generator's [m, d]: the distribution of all values (what KS and
    JSD score), and the voxel-pair correlations of a generator against the held-out ones (what the
    correlation-structure r scores; `max_pairs` pairs drawn at random, the same for every generator)."""
    reference = np.asarray(reference, np.float64)
    arrays = {name: np.asarray(values, np.float64) for name, values in samples.items()}
    if reference.ndim != 2 or any(a.ndim != 2 or a.shape[1] != reference.shape[1] for a in arrays.values()):
        shapes = [reference.shape, *(a.shape for a in arrays.values())]
        raise EvaluationError(f"distribution_comparison needs [n, d] arrays with one d, got {shapes}")
    if reference.shape[1] < 2:
        raise EvaluationError("distribution_comparison needs at least 2 voxels for voxel-pair correlations")
    every_value = np.concatenate([_finite(reference), *(_finite(a) for a in arrays.values())])
    low, high = np.quantile(every_value, [0.0005, 0.9995]) if every_value.size else (-1.0, 1.0)
    edges = np.linspace(low, max(high, low + 1e-6), 61)  # the central 99.9%
    # random voxel pairs i != j, drawn without the d x d matrix (d is ~15,000 at NSD scale)
    rng, voxels = np.random.default_rng(seed), reference.shape[1]
    rows = rng.integers(0, voxels, max_pairs)
    columns = rng.integers(0, voxels - 1, max_pairs)
    columns += columns >= rows
    held_out_r = _pair_correlations(reference, rows, columns)
    figure = _new_figure(figsize=(11, 4.5))
    values_ax, pairs_ax = figure.subplots(1, 2)
    values_ax.hist(
        _finite(reference), edges, density=True, histtype="stepfilled", color="0.8", label="held out"
    )
    for name, values in arrays.items():
        values_ax.hist(_finite(values), edges, density=True, histtype="step", linewidth=1.3, label=name)
        generated_r = _pair_correlations(values, rows, columns)
        pairs_ax.scatter(held_out_r, generated_r, s=2, alpha=0.3, label=name)
    values_ax.set(xlabel="value (z-scored on training patterns)", ylabel="density", title="all values")
    values_ax.legend(fontsize="small")
    pairs_ax.axline((0, 0), slope=1, color="0.4", linewidth=0.8)
    pairs_ax.set(xlabel="held-out correlation", ylabel="generated correlation", title="voxel pairs")
    pairs_ax.legend(fontsize="small", markerscale=4)
    figure.tight_layout()
    return _save(figure, path, dpi)


def _finite(values: np.ndarray) -> np.ndarray:
    """The finite values, flat: a diverged generator's NaNs empty its histogram, not stop the figure."""
    flat = values.ravel()
    return flat[np.isfinite(flat)]


def _pair_correlations(values: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Pearson r across samples of each voxel pair (rows[k], columns[k]); NaN for a constant voxel."""
    centred = values - values.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = centred / np.sqrt((centred**2).mean(0))
    return (scaled[:, rows] * scaled[:, columns]).mean(0)


def embedding_scatter(path: str | Path, groups: Mapping[str, ArrayLike], *, dpi: int = 100) -> Path:
    """Groups of [n, d] points projected on the first two principal axes of all of them together."""
    arrays = {name: np.asarray(points, np.float64) for name, points in groups.items()}
    stacked = np.concatenate(list(arrays.values()))
    mean = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    figure = _new_figure(figsize=(5, 5))
    ax = figure.subplots()
    for name, points in arrays.items():
        projected = (points - mean) @ vt[:2].T
        ax.scatter(projected[:, 0], projected[:, 1], s=6, alpha=0.6, label=name)
    ax.set(xlabel="PC 1", ylabel="PC 2", title="latent space (PCA)")
    ax.legend()
    figure.tight_layout()
    return _save(figure, path, dpi)


def method_columns(
    path: str | Path,
    panels: Mapping[str, tuple[ArrayLike, Mapping[str, ArrayLike]]],
    *,
    n_images: int = 6,
    cell_inches: float = 0.8,
    dpi: int = 100,
) -> Path:
    """Side-by-side comparison: one block of rows per data set (its first `n_images` test images), one column
    per method after the seen image. `panels`: data set -> (truth [n, H, W], method -> images [n, H, W]); a
    method a data set lacks leaves its cells blank."""
    if n_images < 1:
        raise EvaluationError(f"n_images must be at least 1, got {n_images}; pass a positive count")
    if not panels:
        raise EvaluationError("method_columns needs at least one data set panel")
    methods = list(dict.fromkeys(name for _, rows in panels.values() for name in rows))
    columns = ["truth", *methods]
    shown = {name: min(n_images, len(check_images(truth, "truth"))) for name, (truth, _) in panels.items()}
    n_rows = sum(shown.values())
    label_inches = 1.4
    figure = _new_figure(figsize=(label_inches + len(columns) * cell_inches, n_rows * cell_inches + 0.8))
    axes = figure.subplots(n_rows, len(columns), squeeze=False)
    row = 0
    for name, (truth, reconstructions) in panels.items():
        truth_arr = check_images(truth, "truth")
        images = {"truth": truth_arr} | {
            method: check_image_pair(truth_arr, recon, recon_name=f"{name}: {method}")[1]
            for method, recon in reconstructions.items()
        }
        for i in range(shown[name]):
            for col, method in enumerate(columns):
                ax = axes[row, col]
                ax.set_xticks([])
                ax.set_yticks([])
                if method in images:
                    ax.imshow(images[method][i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                else:
                    ax.set_axis_off()
            if i == 0:
                axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            row += 1
    for col, method in enumerate(columns):
        axes[0, col].set_title(method, fontsize=7, rotation=45, ha="left")
    figure.subplots_adjust(
        left=label_inches / figure.get_figwidth(), right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.05
    )
    return _save(figure, path, dpi, fit_text=True)  # the last column's slanted title reaches past the grid
