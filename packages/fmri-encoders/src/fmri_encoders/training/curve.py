"""The loss curve a training run leaves beside its checkpoints, and a method's list of them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fmri_eval.figures import training_curve

if TYPE_CHECKING:
    from fmri_encoders.training.loop import TrainingResult


def write_loss_curve(path: Path, losses: list[float]) -> None:
    """Loss per step and its running mean over ~1% of training, on a log axis."""
    window = max(1, len(losses) // 100)
    smoothed = [sum(losses[max(0, i - window + 1) : i + 1]) / min(window, i + 1) for i in range(len(losses))]
    path.parent.mkdir(parents=True, exist_ok=True)
    training_curve(
        path, list(range(1, len(losses) + 1)), smoothed, label=f"loss (mean of {window})", log_y=True
    )


def loss_curves(**results: TrainingResult | None) -> dict[str, Path]:
    """A method's `artefacts()`: the loss curve of each training it ran, by name, where one was drawn."""
    return {name: result.loss_curve for name, result in results.items() if result and result.loss_curve}
