"""Every method on every real data set and the simulator, one cell at a time, in one table and one figure.

    uv run benchmarks/leaderboard.py                      # all cells on this machine's CPU
    uv run benchmarks/leaderboard.py --device cuda        # on a GPU
    uv run benchmarks/leaderboard.py --data miyawaki-kfold5 --method ridge --method sd-lora

A cell is one data set and split with one method, run through apps/reconstruct.py beside the mean image and
ridge of the same run (so its paired differences from ridge are in its own metrics.json). Cells are
resumable: a cell whose run folder is complete is read, not run again; a killed cell starts afresh (its
training resumes from its checkpoints, and its wall time counts every run stopped by Ctrl-C or kill). The
table and figure hold every complete cell on record, so cells can be run a few at a time. Each method
samples with the settings its RECIPES give, and chooses what `--choose` lists on validation stimuli of each
fold's training trials. Writes benchmarks/results/leaderboard-<device>.json and .md (numbers, paired
differences from ridge, wall time per cell), leaderboard-<device>.png (one column of reconstructions per
method) and the figure's columns on record, leaderboard-<device>-columns/ (the first test trials'
indices and 8-bit reconstructions as PNG), so the figure keeps cells whose run folders are on another machine.
Needs FMRI_DATA_DIR.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from result_file import RESULTS

from fmri_data.errors import DataError
from fmri_data.io import load_dataset
from fmri_data.methods.registry import JOIN
from fmri_eval.atomic import atomic_write, atomic_write_text
from fmri_eval.figures import method_columns
from fmri_eval.io import load_reconstructions

ROOT = Path(__file__).resolve().parents[1]
DATA = {  # cell name -> (data, split, prior corpus)
    "digit69-given": ("digit69", "given", "digits"),
    "digit69-kfold5": ("digit69", "kfold:5", "digits"),
    "miyawaki-kfold5": ("miyawaki", "kfold:5", "binary-patterns"),
    "sim-given": ("sim", "given", "simulator"),
}
METHODS = (
    "mean",
    "ridge",
    "mlp",
    "retrieval",
    "cvae",
    "ddpm",
    "ldm",
    "sd-direct",
    "sd-lora",
    "sd-full",
    "sd-control",
    "brain-diffuser-stage1",
    "brain-diffuser",
    "inverse-retinotopy",
    "ridge-patches",
    "cvae+ldm",
    "sd-lora+inverse-retinotopy",
)
ONLY_ON = {
    "inverse-retinotopy": {"miyawaki-kfold5"},
    "ridge-patches": {"miyawaki-kfold5"},
    "cvae+ldm": {"digit69-given", "digit69-kfold5"},
    "sd-lora+inverse-retinotopy": {"miyawaki-kfold5"},
}
"""Methods that need a stimulus design some cells lack (inverse-retinotopy and ridge-patches: K x K binary
patches), and the ensembles (members joined by '+', weighed on validation stimuli), each where its members
are this leaderboard's best of different kinds: with the cost of both members twice over, they run where
the issue sets a best-method target within reach of a 2-core session."""
# where the stimuli are K x K binary patches (Miyawaki), each may read its images out patch by patch
READOUT = ["--choose", "readout=pixels,patches"]
GUIDED = [*READOUT, "--choose", "likelihood_weight=0,0.5,1"]
# the main job's defaults: the sd-* routes may add what sampling changed to ridge's own image
GUIDED_RESIDUAL = [*GUIDED, "--choose", "decode=vae,residual"]
# the cvae's size: 16 training figures per fold (Miyawaki) want a smaller network than 80 digits
CVAE_SIZES = ["--choose", "latent_dim=16,32", "--choose", "width=16,32"]
# and Miyawaki's, whose folds chose CVAE_SIZES' edges (latent 32 in 3 of 5, width 16 in 4 of 5), reach further
CVAE_SIZES_FEW_FIGURES = ["--choose", "latent_dim=16,32,64", "--choose", "width=8,16"]
# the cvae samples in one pass, so the likelihood weighs its samples: a tempered weight, as voxels share noise
CVAE_WEIGHTS = ["--choose", "likelihood_weight=0,0.03,0.1,0.3"]
# and on Miyawaki it may take ridge's image read out as the design's patches for its condition: on ridge's
# pixel image it scored below ridge read out that way (results/condition_readout-miyawaki-kfold5-cvae.json)
CVAE_CONDITION_READOUT = ["--choose", "condition_readout=pixels,patches"]
# and there the likelihood weighing its samples may take the voxels' noise as correlated
# (fmri_encoders.noise): offered to validation, it lifted pcc and SSIM on two draws
# (results/encoding_noise-miyawaki-kfold5-cvae.json)
NOISE_CHOICE = ["--choose", "encoding_noise=independent,correlated"]
# stage 2's samples, already guided, weighed by the encoding model's likelihood too (all weighings score one
# set of samples)
STAGE2_WEIGHTS = ["--choose", "sample_weight=0,0.03,0.1,0.3"]
# stage 2's strength: the published 0.75 (0.9 matched it on validation in every fold) or 0.3, which 4 of
# digit69 kfold:5's 5 folds chose on their validation stimuli when its probes were scored again
# (results/rescore_probes-digit69-kfold5-brain-diffuser.json), and which keeps more of stage 1 where the
# small prior pulls images away from it (the simulator: 0.37 pcc + SSIM on validation without guidance)
STAGE2_STRENGTH = ["--choose", "strength=0.3,0.75"]
# and the simulator's, whose validation chose the grid's lower edge, 0.3, well ahead of 0.75 (pcc + SSIM 1.004
# against 0.906), while stage 2 still fell 0.059 pcc below stage 1 on the test trials: it reaches lower
STAGE2_STRENGTH_LOWER = ["--choose", "strength=0.15,0.3,0.75"]
# and digit69 kfold:5's, whose folds chose 0.3 in every fold among 0.3/0.75, and 0.2 in four of five among
# 0.2/0.3/0.4/0.75 (results/brain_diffuser_finer_strength-digit69-kfold5.json): its two lowest
STAGE2_STRENGTH_LOW = ["--choose", "strength=0.2,0.3"]
# classifier-free guidance of stage 2's ridge-predicted tokens (the prior is adapted with condition dropout,
# so its unconditional prediction is learned): 1, none, as the small route's default, or above it
STAGE2_CFG = ["--choose", "guidance_scale=1,2,3"]
# guidance up to weight 2 for ldm and brain-diffuser: on Miyawaki, with GUIDED's grid, 4 of ldm's 5 folds and
# all 5 of brain-diffuser's chose its edge, weight 1 (brain-diffuser's validation pcc + SSIM still rising)
STRONG_GUIDANCE = ["--choose", "likelihood_weight=0,0.5,1,2"]
# ddpm and ldm pre-train once on the data set's prior corpus; each of a kfold cell's ten fits (a probe and
# the final fit per fold) then trains a quarter of the steps from there instead of all of them from scratch
PRIMED = ["--corpus-finetune", "0.25"]
# ldm may start sampling from its own first stage (img2img from the latent ridge decoding, which its
# autoencoder decodes as well as pixel ridge or better): on Miyawaki every fold's probe scored best there,
# at the likelihood weight 2 in three folds, above the pure-noise start's best at weight 1
LATENT_START = ["--choose", "strength=0.3,1", *STRONG_GUIDANCE]
# the cvae pre-trains once per size on the corpus too, and each fit trains half its steps from there
CVAE_PRIMED = ["--corpus-finetune", "0.5"]
RECIPES: dict[str, list[str]] = {
    "cvae": [*READOUT, *CVAE_SIZES, *CVAE_WEIGHTS, *CVAE_PRIMED],
    "ddpm": [*GUIDED, *PRIMED],
    "ldm": [*READOUT, *LATENT_START, *PRIMED],
    "sd-direct": GUIDED_RESIDUAL,
    "sd-lora": GUIDED_RESIDUAL,
    "sd-full": GUIDED_RESIDUAL,
    "sd-control": GUIDED_RESIDUAL,
    "brain-diffuser": [*READOUT, *STAGE2_STRENGTH, *STRONG_GUIDANCE, *STAGE2_WEIGHTS],
}
"""Options each method runs with (beyond the data set's prior corpus): what the method chooses on
validation stimuli inside each fold."""
CELL_RECIPES: dict[tuple[str, str], list[str]] = {
    ("miyawaki-kfold5", "cvae"): [
        *READOUT,
        *CVAE_SIZES_FEW_FIGURES,
        *CVAE_WEIGHTS,
        *CVAE_PRIMED,
        *CVAE_CONDITION_READOUT,
        *NOISE_CHOICE,
    ],
    ("sim-given", "brain-diffuser"): [*READOUT, *STAGE2_STRENGTH_LOWER, *STRONG_GUIDANCE, *STAGE2_WEIGHTS],
    ("digit69-kfold5", "brain-diffuser"): [
        *READOUT,
        *STAGE2_STRENGTH_LOW,
        *STRONG_GUIDANCE,
        *STAGE2_WEIGHTS,
        *STAGE2_CFG,
    ],
}
"""Recipes of single cells, in place of their method's: where a cell's own validation choices asked for a
grid that other cells do not need, or where a lever met the cell's bar and gave nothing in the other cells
it was tried in (stage 2's guidance scale: results/*_guidance-*.json)."""


def recipe(data: str, method: str) -> list[str]:
    """The options the cell of `data` and `method` runs with: its own recipe, else its method's; an
    ensemble's are its members' recipes in that cell."""
    if JOIN in method:
        return [option for member in method.split(JOIN) for option in member_recipe(data, member)]
    return CELL_RECIPES.get((data, method), RECIPES.get(method, []))


def member_recipe(data: str, member: str) -> list[str]:
    """A method's recipe in cell `data` as an ensemble's member: each `--choose NAME=...` as
    `--choose member:NAME=...` and `--corpus-finetune F` as the one-value grid `member:corpus_finetune=F`,
    so that every member keeps its own grid beside the others'; `--validation-folds K` holds for the whole
    run (every member's choices and the weights), as given."""
    options = recipe(data, member)
    scoped = []
    for option, value in zip(options[::2], options[1::2], strict=True):
        if option == "--validation-folds":
            scoped += [option, value]
            continue
        if option not in ("--choose", "--corpus-finetune"):
            raise ValueError(f"{member}'s recipe option {option} has no per-member form; give it as --choose")
        setting = value if option == "--choose" else f"corpus_finetune={value}"
        scoped += ["--choose", f"{member}:{setting}"]
    return scoped


METRICS = ("pcc", "ssim", "twoway")
FIGURE_ROWS = 6
"""Test trials per data set in the figure."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data", action="append", choices=list(DATA), help="cells to run (default: all)")
    parser.add_argument("--method", action="append", choices=METHODS, help="methods to run (default: all)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "leaderboard", help="cell run folders")
    parser.add_argument("--quick", action="store_true", help="smoke-test budgets (not for reporting)")
    args = parser.parse_args(argv)
    for stop in (signal.SIGTERM, signal.SIGHUP):  # a kill ends a cell through its `finally`, as Ctrl-C does
        signal.signal(stop, lambda number, _: sys.exit(128 + number))
    tag = f"{args.device}{os.cpu_count()}" if args.device == "cpu" else args.device
    tag += "-quick" if args.quick else ""
    runs = args.runs / tag
    for data in args.data or list(DATA):
        for method in args.method or list(METHODS):
            run_cell(runs, data, method, args)
    cells = {  # every complete cell on record, also those of earlier invocations
        data: {
            method: runs / data / method
            for method in METHODS
            if (runs / data / method / "cell.json").is_file()
        }
        for data in DATA
    }
    out = (runs if args.quick else RESULTS) / f"leaderboard-{tag}"  # smoke tests stay out of results/
    here = {data: methods for data, methods in cells.items() if methods}
    recorded = (
        json.loads(out.with_suffix(".json").read_text())["cells"]
        if out.with_suffix(".json").is_file()
        else {}
    )
    table = merge(recorded, summarise(here))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"device": tag, "cells": table}, indent=2) + "\n")
    store = out.with_name(f"{out.name}-columns")
    columns = update_columns(store, here)
    absent = [cell for cell in on_record(table) if cell not in columns]
    out.with_suffix(".md").write_text(markdown(table, tag, absent, earlier_recipe(table)))
    if absent:
        print(
            f"not in the figure: {', '.join(absent)}; where their run folders are, run each cell's command "
            "(it is read, not run again), or run it afresh"
        )
    if columns:
        figure(columns, table, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


def run_cell(runs: Path, data: str, method: str, args: argparse.Namespace) -> None:
    """Run one cell unless its folder is complete (metrics.json, reconstructions.npz, cell.json)."""
    folder = runs / data / method
    if data not in ONLY_ON.get(method, {data}):
        print(f"[{data} / {method}] skipped: {method} runs only on {', '.join(sorted(ONLY_ON[method]))}")
        return
    if (folder / "cell.json").is_file():
        return
    command = cell_command(runs, data, method, args.device, quick=args.quick)
    print(f"[{data} / {method}] {' '.join(command[1:])}", flush=True)
    work = runs / "work" / data / method
    resumed = work.exists()
    wall_s, invocations = timed_run(command, work / "wall_so_far.json")
    record = {"wall_s": wall_s, "invocations": invocations, "resumed": resumed, "command": command[1:]}
    (folder / "cell.json").write_text(json.dumps(record, indent=2) + "\n")


def timed_run(command: list[str], ledger: Path) -> tuple[float, int]:
    """Run `command`; its wall time and invocations, counting the earlier ones that were stopped or failed.

    A cell resumes from its checkpoints, so the time of a stopped invocation is part of the cell's: `ledger`
    (in the cell's work folder) keeps it until the cell completes.
    """
    earlier = json.loads(ledger.read_text()) if ledger.is_file() else {"wall_s": 0.0, "invocations": 0}
    start = time.perf_counter()
    try:
        subprocess.run(command, check=True, cwd=ROOT)
    finally:
        spent = round(earlier["wall_s"] + time.perf_counter() - start, 1)
        ledger.parent.mkdir(parents=True, exist_ok=True)
        record = {"wall_s": spent, "invocations": earlier["invocations"] + 1}
        atomic_write_text(ledger, json.dumps(record) + "\n")
    ledger.unlink()
    return spent, earlier["invocations"] + 1


def cell_command(
    runs: Path, data: str, method: str, device: str, *, quick: bool = False, cache: Path | None = None
) -> list[str]:
    """The apps/reconstruct.py command of one cell: the method beside the mean image and ridge, with the
    data set's prior corpus and the method's recipe, its folders under `runs` (base models under `cache`,
    by default runs/cache)."""
    source, split, corpus = DATA[data]
    baselines = [m for m in ("mean", "ridge") if m != method]
    return [
        sys.executable,
        str(ROOT / "apps" / "reconstruct.py"),
        "--data",
        source,
        "--split",
        split,
        *[option for name in [*baselines, method] for option in ("--method", name)],
        "--out",
        str(runs / data / method),
        "--work-dir",
        str(runs / "work" / data / method),
        "--cache-dir",
        str(cache or runs / "cache"),
        "--resume",
        "--device",
        device,
        "--no-progress",
        *(["--prior-corpus", corpus] if corpus != "simulator" else []),
        *recipe(data, method),
        *(["--quick"] if quick else []),
    ]


def summarise(cells: dict[str, dict[str, Path]]) -> dict[str, dict[str, dict]]:
    """Per cell: every reported row's scores, intervals and paired difference from ridge, and wall time."""
    table: dict[str, dict[str, dict]] = {}
    for data, methods in cells.items():
        for method, folder in methods.items():
            metrics = json.loads((folder / "metrics.json").read_text())
            cell = json.loads((folder / "cell.json").read_text())
            rows = [name for name in metrics["methods"] if name == method or name.startswith(f"{method}-")]
            for name in rows or [method]:
                scores = metrics["methods"][name]
                entry = {key: scores[key] for key in METRICS} | {
                    f"{k}_ci": scores[f"{k}_ci"] for k in METRICS
                }
                entry["vs_ridge"] = {
                    key: value for key, value in scores.get("vs_baseline", {}).items() if key in METRICS
                }
                entry |= {
                    "wall_s": cell["wall_s"],
                    "invocations": cell.get("invocations", 1),
                    "resumed": cell.get("resumed", False),
                    "seconds": metrics.get("seconds", {}).get(method),
                    "validation": metrics.get("validation", {}).get(method),
                    **({"recipe": recipe_run(cell["command"])} if "command" in cell else {}),
                }
                entry["prior_corpus"] = metrics.get("prior_corpus")
                entry["pre_training"] = metrics.get("pre_training", {}).get(method)
                table.setdefault(data, {})[name] = entry
    return table


def recipe_run(command: list[str]) -> list[str]:
    """The recipe a cell ran with: its command's options after `--no-progress` and the prior corpus, if
    any, without `--quick` (see cell_command)."""
    options = command[command.index("--no-progress") + 1 :]
    options = options[2:] if options[:1] == ["--prior-corpus"] else options
    return [option for option in options if option != "--quick"]


def merge(
    recorded: dict[str, dict[str, dict]], fresh: dict[str, dict[str, dict]]
) -> dict[str, dict[str, dict]]:
    """The results file's cells updated by the cells whose run folders are here, in DATA and METHODS order.

    Run folders live in runs/, which a fresh clone lacks: a cell run there must not erase the cells on
    record from other machines.
    """
    order = {method: i for i, method in enumerate(METHODS)}
    table: dict[str, dict[str, dict]] = {}
    for data in DATA:
        rows = recorded.get(data, {}) | fresh.get(data, {})
        ranked = sorted(rows, key=lambda name: (order.get(_method_of(name), len(order)), name))
        if ranked:
            table[data] = {name: rows[name] for name in ranked}
    return table


def _method_of(row: str) -> str:
    """The method a row belongs to ("sd-lora-1" -> "sd-lora", "brain-diffuser-stage1" -> itself)."""
    return row if row in METHODS else row.rsplit("-", 1)[0]


def markdown(table: dict[str, dict[str, dict]], tag: str, absent: list[str], earlier: list[str]) -> str:
    """The results file's table per data set, then where the time went; `absent`: cells the figure lacks,
    `earlier`: cells run with an earlier recipe than today's."""
    lines = [
        f"# Leaderboard ({tag})",
        "",
        "pcc / SSIM / 2-way on held-out stimuli; − ridge: the paired difference over the same trials, with "
        "✓ where its 95% interval (stimuli resampled) is above 0; wall time of the whole cell (of all its "
        "runs, where it was stopped and resumed).",
        "",
    ]
    for data, rows in table.items():
        lines += [f"## {data}", "", "| method | pcc | SSIM | 2-way | − ridge (pcc / SSIM / 2-way) | wall |"]
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for name, entry in rows.items():
            deltas = " / ".join(_delta(entry["vs_ridge"].get(key)) for key in METRICS)
            scores = " | ".join(f"{entry[key]:.3f}" for key in METRICS)
            runs = f" ({n} runs)" if (n := entry.get("invocations", 1)) > 1 else ""
            lines.append(f"| {name} | {scores} | {deltas or '—'} | {entry['wall_s'] / 60:.1f} min{runs} |")
        lines.append("")
    if absent:
        lines += [f"Not in the figure (their run folders were not where it was drawn): {', '.join(absent)}."]
        lines.append("")
    if earlier:
        lines += [
            "Run with an earlier recipe than leaderboard.py's today (fewer settings or values chosen among "
            "on validation, or cvae/ddpm/ldm without the corpus prior; delete the cell's folders to run it "
            "again): "
            f"{', '.join(earlier)}."
        ]
        lines.append("")
    return "\n".join([*lines, *time_spent(table)])


def time_spent(table: dict[str, dict[str, dict]]) -> list[str]:
    """How much of the whole leaderboard is on record and what it took: the sum of its cells' wall times,
    and the cells still missing (each data set with each method that can run on it)."""
    planned = [(data, method) for data in DATA for method in METHODS if data in ONLY_ON.get(method, {data})]
    done = [(data, method) for data, method in planned if method in table.get(data, {})]
    minutes = sum(table[data][method]["wall_s"] for data, method in done) / 60
    lines = [
        "## Time",
        "",
        f"{len(done)} of {len(planned)} cells on record, {minutes:.0f} min of wall time in all.",
    ]
    if missing := [f"{data}/{method}" for data, method in planned if (data, method) not in done]:
        lines += ["", f"Not run: {', '.join(missing)}."]
    return [*lines, "", *stages(table, done)]


def stages(table: dict[str, dict[str, dict]], done: list[tuple[str, str]]) -> list[str]:
    """Where each cell's wall time went, for the cells whose runs recorded it (metrics.json "seconds"):
    choosing settings on validation, the final fits, sampling the test trials, and the rest (the mean and
    ridge baselines, loading, evaluation, writing). A resumed cell's record splits only its last run, so
    it is left out."""
    timed = [
        (data, method)
        for data, method in done
        if table[data][method].get("seconds") and not table[data][method].get("resumed", False)
    ]
    if not timed:
        return []
    lines = [
        "| cell | wall | choosing on validation | final fit | sampling the test trials | the rest |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    totals = np.zeros(5)
    for data, method in timed:
        entry = table[data][method]
        seconds = entry["seconds"]
        spent = np.array(
            [
                entry["wall_s"],
                seconds["validation"],
                seconds["fit"] - seconds["validation"],
                seconds["predict"],
                entry["wall_s"] - seconds["fit"] - seconds["predict"],
            ]
        )
        totals += spent
        lines.append(f"| {data}/{method} | " + " | ".join(f"{s / 60:.1f} min" for s in spent) + " |")
    lines.append("| all of these | " + " | ".join(f"{s / 60:.1f} min" for s in totals) + " |")
    return ["Where the time went, in the cells that record it and ran in one go:", "", *lines, ""]


def _delta(record: dict | None) -> str:
    if not record:
        return "—"
    mark = " ✓" if record["ci"][0] > 0 else ""
    return f"{record['delta']:+.3f}{mark}"


def earlier_recipe(table: dict[str, dict[str, dict]]) -> list[str]:
    """The cells on record whose validation grid lacks a setting or a value today's recipe chooses among,
    that did not start from the prior corpus where today's recipe does, or that scored their grid on
    another number of validation folds ("data/method").

    `readout` is chosen only where the stimuli are binary patches, so its absence proves nothing. An
    ensemble's grid is its weights, so its recipe is compared as run; one recorded before cells recorded
    their recipes ran its members' method-wide recipes."""
    stale = []
    for data, rows in table.items():
        for method, entry in rows.items():
            if method in METHODS and JOIN in method:
                if _ensemble_stale(data, method, entry):
                    stale.append(f"{data}/{method}")
                continue
            if method not in METHODS or not entry.get("validation"):
                continue
            options = recipe(data, method)
            wanted = dict(options[i + 1].split("=") for i, o in enumerate(options) if o == "--choose")
            grid = entry["validation"][0]["grid"]
            missing = any(
                not _as_values(values) <= {choice_value(point.get(name)) for point in grid}
                for name, values in wanted.items()
                if name != "readout"
            )
            unprimed = "--corpus-finetune" in options and not entry.get("pre_training")
            refolded = entry["validation"][0].get("validation_folds", 1) != validation_folds(options)
            if missing or unprimed or refolded:
                stale.append(f"{data}/{method}")
    return stale


def validation_folds(options: list[str]) -> int:
    """How many validation folds a recipe scores its grid on (`--validation-folds`, else 1)."""
    return next(
        (int(v) for o, v in zip(options[::2], options[1::2], strict=True) if o == "--validation-folds"), 1
    )


def _ensemble_stale(data: str, method: str, entry: dict) -> bool:
    """Whether an ensemble's cell on record ran another recipe than today's. A cell recorded before cells
    recorded their recipes is judged by today's CELL_RECIPES alone: it ran its members' RECIPES entries,
    which were today's when the last of those cells ran (a later change to them would go unseen there)."""
    if "recipe" in entry:
        return entry["recipe"] != recipe(data, method)
    # recorded before cells recorded their recipes, when ensembles ran their members' method-wide recipes
    return any((data, member) in CELL_RECIPES for member in method.split(JOIN))


def _as_values(listed: str) -> set[Any]:
    """A `--choose` list's values as a validation grid records them (numbers as floats)."""
    return {choice_value(value) for value in listed.split(",")}


def choice_value(value: Any) -> Any:
    """A `--choose` value or a grid's recorded one, numbers as floats (as the command line reads them)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def on_record(table: dict[str, dict[str, dict]]) -> list[str]:
    """The cells of the results file ("data/method"), single-sample rows left out."""
    return [f"{data}/{row}" for data, rows in table.items() for row in rows if row in METHODS]


def update_columns(store: Path, cells: dict[str, dict[str, Path]]) -> dict[str, np.ndarray]:
    """The figure's columns on record (the folder `store`), updated with the cells whose run folders are here.

    Per data set (`store/<data>/`): trials.json, the indices of the test trials the figure shows (its first
    FIGURE_ROWS, in the runs' order), and per method a PNG of their reconstructions stacked (8-bit, lossless);
    the mean image and ridge, run beside every cell, come from any of them. Run folders live in runs/, which
    a fresh clone lacks, so these images let the figure hold every cell on record, as the table does. The
    seen images are not kept: they are the data set's, read from it when the figure is drawn.
    """
    columns: dict[str, np.ndarray] = {}
    for trials in store.glob("*/trials.json"):
        data = trials.parent.name
        columns[f"{data}/trial_index"] = np.array(json.loads(trials.read_text()))
        for image in trials.parent.glob("*.png"):
            stacked = np.asarray(Image.open(image))
            columns[f"{data}/{image.stem}"] = stacked.reshape(FIGURE_ROWS, -1, stacked.shape[1])
    for data, methods in cells.items():
        for method, folder in methods.items():
            saved = load_reconstructions(folder / "reconstructions.npz")
            if saved.trial_index is None:
                raise SystemExit(f"{folder} predates trial indices; delete it and run the cell again")
            shown = saved.trial_index[:FIGURE_ROWS]
            if f"{data}/trial_index" not in columns:
                columns[f"{data}/trial_index"] = shown
                (store / data).mkdir(parents=True, exist_ok=True)
                atomic_write_text(store / data / "trials.json", json.dumps(shown.tolist()) + "\n")
            if not np.array_equal(columns[f"{data}/trial_index"], shown):
                raise SystemExit(
                    f"{folder} shows other test trials than {store / data} holds (another split?); "
                    f"delete {store / data} and the runs of the old split, then run again"
                )
            for name in {method, "mean", "ridge"} & set(saved.reconstructions):
                images = np.clip(saved.reconstructions[name][:FIGURE_ROWS], 0.0, 1.0)
                column = np.round(images * 255).astype(np.uint8)
                if not np.array_equal(columns.get(f"{data}/{name}"), column):
                    columns[f"{data}/{name}"] = column
                    stacked = Image.fromarray(column.reshape(-1, column.shape[2]))
                    atomic_write(store / data / f"{name}.png", functools.partial(stacked.save, format="PNG"))
    return columns


def figure(columns: dict[str, np.ndarray], table: dict[str, dict[str, dict]], path: Path) -> None:
    """One block of rows per data set (the seen images, read from the data set by trial index), one column
    per method of the table; a data set that cannot be read here is left out, and said so."""
    panels = {}
    for data, (source, _, _) in DATA.items():
        if (trials := columns.get(f"{data}/trial_index")) is None:
            continue
        try:
            seen = load_dataset(source).images[trials]
        except DataError as error:
            print(f"{data} left out of the figure: {error}")
            continue
        methods = [m for m in METHODS if m in table.get(data, {}) and f"{data}/{m}" in columns]
        panels[data] = (seen, {m: columns[f"{data}/{m}"] / 255.0 for m in methods})
    if panels:
        method_columns(path, panels, n_images=FIGURE_ROWS)


if __name__ == "__main__":
    sys.exit(main())
