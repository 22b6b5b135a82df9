"""report.md: what was evaluated and how, the metrics, the differences from the baseline, figure, command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fmri_eval.evaluate import LOWER_IS_BETTER, SCORE_NAMES
from fmri_eval.literature_table import present_columns

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


def _cell(scores: Mapping[str, Any], metric: str, significant: int) -> str:
    if metric not in scores:
        return "n/a"
    text = f"{scores[metric]:#.{significant}g}"
    interval = scores.get(f"{metric}_ci")
    if interval is not None:
        text += f" [{interval[0]:#.{significant}g}, {interval[1]:#.{significant}g}]"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_table(
    metrics_by_method: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str] = SCORE_NAMES,
    significant: int = 3,
) -> str:
    """Markdown table, one row per method, cells like `0.791 [0.750, 0.830]` (mean [CI]).

    Significant digits rather than fixed decimals keep small values such as MSE readable.
    """
    header = ["method", *(COLUMN_TITLES.get(metric, metric) for metric in metrics)]
    rows = [
        [name, *(_cell(scores, metric, significant) for metric in metrics)]
        for name, scores in metrics_by_method.items()
    ]
    return _table(header, rows)


def excludes_zero(interval: Sequence[float]) -> bool:
    """True when a paired difference's interval lies wholly above or wholly below 0."""
    return interval[0] > 0.0 or interval[1] < 0.0


def _difference_cell(difference: Mapping[str, Any] | None, significant: int) -> str:
    if difference is None:
        return "n/a"
    low, high = difference["ci"]
    text = f"{difference['delta']:+#.{significant}g} [{low:+#.{significant}g}, {high:+#.{significant}g}]"
    if excludes_zero(difference["ci"]):
        text = f"**{text}**"
    p = difference["p"]
    return f"{text} p={p:.3f}" if p >= 0.001 else f"{text} p<0.001"


def difference_table(
    metrics_by_method: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str] = SCORE_NAMES,
    significant: int = 3,
) -> str:
    """Markdown table of each method's "vs_baseline" differences; bold where the interval excludes 0."""
    header = ["method", *(f"Δ {COLUMN_TITLES.get(metric, metric)}" for metric in metrics)]
    rows = [
        [name, *(_difference_cell(scores["vs_baseline"].get(metric), significant) for metric in metrics)]
        for name, scores in metrics_by_method.items()
        if "vs_baseline" in scores
    ]
    return _table(header, rows)


def describe_test_set(scored: Mapping[str, Any]) -> str:
    """One line: how many test trials, how many distinct stimuli, whether repeats were averaged."""
    averaged = {
        True: "repeats averaged before decoding",
        False: "repeats not averaged",
        None: "repeat averaging not recorded",
    }[scored["repeats_averaged"]]
    return f"{scored['n_test']} test trials, {scored['n_stimuli']} distinct test stimuli, {averaged}"


def describe_intervals(ci: Mapping[str, Any]) -> str:
    """How the intervals were made, in words."""
    unit = (
        "stimuli (all trials of a drawn stimulus together)"
        if ci["unit"] == "stimulus"
        else "trials (one per stimulus)"
    )
    return (
        f"{ci['level']:.0%} percentile bootstrap CI resampling test {unit}, "
        f"{ci['n_boot']} resamples, seed {ci['seed']}"
    )


def render_report(
    *,
    dataset: str,
    split: str,
    scored: Mapping[str, Any],
    figure: str | None = None,
    notes: Sequence[str] = (),
    command: str | None = None,
    retrieval: Mapping[str, Mapping[str, Any]] | None = None,
    literature: Mapping[str, Any] | None = None,
) -> str:
    """report.md's text from `scored` (fmri_eval.evaluate.evaluate_run's result) and the run's context."""
    lines = [
        f"# Reconstruction evaluation: {dataset} ({split})",
        "",
        f"- dataset: {dataset}",
        f"- split: {split}",
        f"- test set: {describe_test_set(scored)}",
        f"- values: mean over test trials [{describe_intervals(scored['ci'])}]",
        "- 2-way: two-way identification on pixel correlations (chance 0.5); same-stimulus pairs",
        "  are excluded when stimulus ids are known",
        "",
    ]
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    lines += ["## Metrics", "", markdown_table(scored["methods"])]
    if scored.get("baseline") is not None:
        lines += _difference_section(scored)
    if retrieval:
        lines += _retrieval_section(retrieval)
    if literature:
        lines += _literature_section(literature)
    if figure:
        lines += ["## Reconstructions", "", f"![reconstructions]({figure})", ""]
    if command:
        lines += ["## Command", "", "```", command, "```", ""]
    return "\n".join(lines)


def write_report(path: str | Path, **context: Any) -> Path:
    """Write report.md: `render_report(**context)` at `path`."""
    path = Path(path)
    path.write_text(render_report(**context), encoding="utf-8")
    return path


def _difference_section(scored: Mapping[str, Any]) -> list[str]:
    baseline = scored["baseline"]
    lower = ", ".join(COLUMN_TITLES[metric].split()[0] for metric in SCORE_NAMES if metric in LOWER_IS_BETTER)
    return [
        f"## Difference from {baseline}",
        "",
        f"- mean of (method − {baseline}) over the same test trials",
        f"  [{scored['ci']['level']:.0%} CI, resampled as above, both methods on the same drawn stimuli];",
        "  p: two-sided bootstrap p-value",
        "- **bold**: the interval excludes 0, i.e. the method differs from "
        f"{baseline} on that metric; for {lower} lower is better",
        "",
        difference_table(scored["methods"]),
    ]


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
