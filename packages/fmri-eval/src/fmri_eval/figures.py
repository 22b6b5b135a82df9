"""PNG figures drawn on an Agg canvas, so they work on headless machines and never open a window."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from fmri_eval.errors import EvaluationError
from fmri_eval.validation import check_image_pair, check_images


def _save(figure: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=dpi)
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

    Pixels are drawn in grey with a fixed 0..1 scale, so brightness is comparable across rows.
    """
    if max_images < 1:
        raise EvaluationError(f"max_images must be at least 1, got {max_images}; pass a positive count")
    truth_arr = check_images(truth, "truth")
    rows = {"truth": truth_arr}
    for name, images in reconstructions.items():
        rows[name] = check_image_pair(truth_arr, images, recon_name=f"reconstructions[{name!r}]")[1]
    n_cols = min(truth_arr.shape[0], max_images)
    label_inches = 1.2
    figure = Figure(figsize=(label_inches + n_cols * cell_inches, len(rows) * cell_inches + 0.4))
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
    figure = Figure(figsize=(6, 4))
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
