"""The table a run prints when it ends: pcc, ssim and 2-way with intervals, within a terminal's width.

Every other metric stays in metrics.json and report.md; this is what a researcher reads first, so it also
marks where a method differs from the baseline (paired interval excluding 0).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from fmri_eval.evaluate import LOWER_IS_BETTER
from fmri_eval.report import excludes_zero

TERMINAL_METRICS = ("pcc", "ssim", "twoway")
TERMINAL_TITLES = {"pcc": "pcc", "ssim": "ssim", "twoway": "2-way"}
TERMINAL_WIDTH = 100
_GAP = "  "


def _cell(scores: Mapping[str, Any], metric: str) -> str:
    low, high = scores[f"{metric}_ci"]
    text = f"{scores[metric]: .3f} [{low:.3f}, {high:.3f}]"
    difference = scores.get("vs_baseline", {}).get(metric)
    if difference is None or not excludes_zero(difference["ci"]):
        return text + "  "
    better = (difference["delta"] < 0) if metric in LOWER_IS_BETTER else (difference["delta"] > 0)
    return text + (" +" if better else " -")


def _shorten(name: str, width: int) -> str:
    """Cut from the middle: the start names the method, the end tells its variants apart (`-1`, `-stage1`)."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[: width - 1 - tail] + "…" + name[len(name) - tail :]


def terminal_table(
    scored: Mapping[str, Any], metrics: Sequence[str] = TERMINAL_METRICS, width: int = TERMINAL_WIDTH
) -> str:
    """Plain-text table of `scored` (fmri_eval.evaluate.evaluate_run's result).

    With the default three metric columns no line is wider than `width`: method names that would not fit
    are shortened in the middle with "…". A legend says how the intervals were made and what + and - mean.
    """
    methods = scored["methods"]
    cells = {name: [_cell(scores, metric) for metric in metrics] for name, scores in methods.items()}
    column = [
        max(len(TERMINAL_TITLES.get(m, m)), *(len(c[i]) for c in cells.values()))
        for i, m in enumerate(metrics)
    ]
    room = width - sum(column) - len(_GAP) * len(metrics)
    name_width = max(6, min(room, max(len("method"), *(len(name) for name in methods))))
    rows = [["method", *(TERMINAL_TITLES.get(metric, metric) for metric in metrics)]]
    rows += [[_shorten(name, name_width), *row] for name, row in cells.items()]
    lines = [
        (
            row[0].ljust(name_width)
            + "".join(_GAP + text.ljust(w) for text, w in zip(row[1:], column, strict=True))
        ).rstrip()
        for row in rows
    ]
    ci = scored["ci"]
    legend = (
        f"{ci['level']:.0%} CIs resample test {'stimuli' if ci['unit'] == 'stimulus' else 'trials'} "
        f"({scored['n_test']} trials, {scored['n_stimuli']} stimuli, {ci['n_boot']} resamples)."
    )
    if scored.get("baseline") is not None:
        level = f"{ci['level']:.0%}"
        legend += f" +/-: better/worse than {scored['baseline']}, the paired {level} interval excluding 0."
    return "\n".join([*lines, *textwrap.wrap(legend, width)])
