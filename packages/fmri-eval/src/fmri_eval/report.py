"""Run outputs: a markdown report, and a folder of metrics, reconstructions and figure written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from numpy.typing import ArrayLike

from fmri_eval.errors import EvaluationError
from fmri_eval.evaluate import SCORE_NAMES, evaluate_reconstructions
from fmri_eval.figures import reconstruction_grid
from fmri_eval.identification import stimulus_retrieval
from fmri_eval.io import save_reconstructions
from fmri_eval.literature_table import FeatureFn, literature_table, present_columns
from fmri_eval.validation import check_images

COLUMN_TITLES = {
    "pcc": "PCC ↑",
    "ssim": "SSIM ↑",
    "mse": "MSE ↓",
    "psnr": "PSNR (dB) ↑",
    "twoway": "2-way ↑",
    "pixcorr": "PixCorr ↑",
    "alexnet2": "AlexNet(2) ↑",
    "alexnet5": "AlexNet(5) ↑",
    "inception": "Inception ↑",
    "clip": "CLIP ↑",
    "effnet": "EffNet-B ↓",
    "swav": "SwAV ↓",
}
RUN_KEYS = ("dataset", "split", "n_test", "methods", "notes", "retrieval", "literature")


def _cell(scores: Mapping[str, Any], metric: str, significant: int) -> str:
    if metric not in scores:
        return "n/a"
    text = f"{scores[metric]:#.{significant}g}"
    interval = scores.get(f"{metric}_ci")
    if interval is not None:
        text += f" [{interval[0]:#.{significant}g}, {interval[1]:#.{significant}g}]"
    return text


def markdown_table(
    metrics_by_method: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str] = SCORE_NAMES,
    significant: int = 3,
) -> str:
    """Markdown table, one row per method, cells like `0.791 [0.750, 0.830]` (mean [CI]).

    Significant digits rather than fixed decimals keep small values such as MSE readable.
    """
    header = ["method", *(COLUMN_TITLES.get(metric, metric) for metric in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name, scores in metrics_by_method.items():
        cells = [name, *(_cell(scores, metric, significant) for metric in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    path: str | Path,
    *,
    dataset: str,
    split: str,
    n_test: int,
    metrics_by_method: Mapping[str, Mapping[str, Any]],
    figure: str | None = None,
    notes: Sequence[str] = (),
    command: str | None = None,
    retrieval: Mapping[str, Mapping[str, Any]] | None = None,
    literature: Mapping[str, Any] | None = None,
) -> Path:
    """Write report.md: what was evaluated, how to read the numbers, the table, figure and command."""
    lines = [
        f"# Reconstruction evaluation: {dataset} ({split})",
        "",
        f"- dataset: {dataset}",
        f"- split: {split}",
        f"- n_test: {n_test} test trials",
        "- values: mean over test trials [95% percentile bootstrap CI over test trials]",
        "- 2-way: two-way identification on pixel correlations (chance 0.5); same-stimulus pairs",
        "  are excluded when stimulus ids are known",
        "",
    ]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    lines += ["## Metrics", "", markdown_table(metrics_by_method)]
    if retrieval:
        lines += _retrieval_section(retrieval)
    if literature:
        lines += _literature_section(literature)
    if figure:
        lines += ["## Reconstructions", "", f"![reconstructions]({figure})", ""]
    if command:
        lines += ["## Command", "", "```", command, "```", ""]
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _retrieval_section(retrieval: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "## Identification among the test stimuli",
        "",
        "| method | candidates | brain→image top-1 | top-5 | image→brain top-1 | top-5 | chance top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, scores in retrieval.items():
        b2i, i2b = scores["brain_to_image"], scores["image_to_brain"]
        lines.append(
            f"| {name} | {scores['n_candidates']} | {b2i.get('top1', float('nan')):.3f} | "
            f"{b2i.get('top5', float('nan')):.3f} | {i2b.get('top1', float('nan')):.3f} | "
            f"{i2b.get('top5', float('nan')):.3f} | {scores['chance'].get('top1', float('nan')):.3f} |"
        )
    return [*lines, ""]


def _literature_section(literature: Mapping[str, Any]) -> list[str]:
    table = literature["methods"]
    return [
        "## NSD literature metrics (425x425)",
        "",
        "- PixCorr, SSIM on images resized to 425x425; AlexNet(2), AlexNet(5), Inception, CLIP: 2-way",
        "  identification on their features (chance 0.5); EffNet-B, SwAV: mean correlation distance",
        *(f"- {note}" for note in literature["notes"]),
        "",
        markdown_table(table, present_columns(table)),
    ]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes `out_dir` only if the block succeeds.

    On an exception the temporary folder is deleted and an existing `out_dir` is left untouched,
    so readers never see a half-written run. An existing `out_dir` is swapped out by two renames
    in the same parent (atomic each) and deleted afterwards.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"output path {out_dir} exists and is not a folder; choose another path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a run folder gets the usual permissions
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except BaseException:
        retired.rename(out_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def write_run(
    out_dir: str | Path,
    *,
    dataset: str,
    split: str,
    truth: ArrayLike,
    stimulus_id: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    trial_index: ArrayLike | None = None,
    notes: Sequence[str] = (),
    command: str | None = None,
    extra: Mapping[str, Any] | None = None,
    similarities: Mapping[str, ArrayLike] | None = None,
    candidate_stimulus: ArrayLike | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    attachments: Mapping[str, str | Path] | None = None,
    literature: bool = False,
    extract_features: FeatureFn | None = None,
) -> dict[str, Any]:
    """Evaluate and write metrics.json, reconstructions.npz, reconstructions.png and report.md.

    `attachments` (file name -> existing file, e.g. training curves) are copied in beside them.
    `literature` adds the NSD literature's table under "literature" (see fmri_eval.literature_table), its
    feature columns from `extract_features` (e.g. fmri_eval.feature_models.FeatureExtractor).

    `similarities` (method -> [n_test, n_candidates] brain-to-image scores against the stimuli
    `candidate_stimulus`) add brain<->image retrieval under the key "retrieval".
    Metrics are computed before any file is written, and files go through `atomic_output_dir`,
    so `out_dir` holds either the previous complete run or the new one. Returns the metrics dict.
    """
    clashes = sorted(set(extra or {}) & set(RUN_KEYS))
    if clashes:
        raise EvaluationError(f"extra keys {clashes} clash with reserved metrics.json keys; rename them")
    n_test = check_images(truth, "truth").shape[0]
    run: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        "n_test": n_test,
        "methods": evaluate_reconstructions(truth, reconstructions, stimulus_id, n_boot=n_boot, seed=seed),
        "notes": list(notes),
        **(extra or {}),
    }
    if similarities:
        if candidate_stimulus is None:
            raise EvaluationError("similarities need candidate_stimulus (the stimulus id of each column)")
        run["retrieval"] = {
            name: stimulus_retrieval(scores, stimulus_id, candidate_stimulus)
            for name, scores in similarities.items()
        }
    if literature:
        table, table_notes = literature_table(
            truth, reconstructions, extract_features, stimulus_id, n_boot=n_boot, seed=seed
        )
        run["literature"] = {"methods": table, "notes": table_notes}
    try:
        metrics_text = json.dumps(run, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(
            f"metrics are not plain JSON ({exc}); pass JSON-compatible extra values"
        ) from exc
    with atomic_output_dir(out_dir) as staging:
        (staging / "metrics.json").write_text(metrics_text + "\n", encoding="utf-8")
        save_reconstructions(
            staging / "reconstructions.npz", truth, reconstructions, stimulus_id, trial_index
        )
        reconstruction_grid(staging / "reconstructions.png", truth, reconstructions)
        write_report(
            staging / "report.md",
            dataset=dataset,
            split=split,
            n_test=n_test,
            metrics_by_method=run["methods"],
            figure="reconstructions.png",
            notes=notes,
            command=command,
            retrieval=run.get("retrieval"),
            literature=run.get("literature"),
        )
        for name, source in (attachments or {}).items():
            shutil.copyfile(source, staging / name)
    return run
