"""What a shorter fit saves a leaderboard cell, and what it costs: the cell run with its own recipe plus one
option that trains less, paired with the leaderboard's record of the same cell (same seed, same splits).

    uv run benchmarks/shorter_fits.py --data digit69-given --method ldm --refit-steps 0.25
    uv run benchmarks/shorter_fits.py --data digit69-given --method ldm --probe-steps 0.5

--probe-steps F trains the probe that chooses settings on validation for a fraction F of each stage's steps;
--refit-steps F starts the final fit from that probe's weights and trains F of the steps (ddpm and ldm).
Writes benchmarks/results/shorter_fits-<data>-<method>-<option>-<device>.json: both runs' validation
choices and scores, their test scores beside ridge and the mean image of the same run, paired differences
from ridge, and wall time split by stage (metrics.json `seconds`). Needs FMRI_DATA_DIR and the cell on
record in benchmarks/results/leaderboard-<device>.json (run benchmarks/leaderboard.py first).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from leaderboard import DATA, METHODS, ROOT, cell_command, recipe, validation_folds
from result_file import RESULTS, write_result

from fmri_data.methods.registry import method_class

SHORTER = {"probe_steps": "--probe-steps", "refit_steps": "--refit-steps"}
CHOOSING = [method for method in METHODS if any("--choose" in recipe(data, method) for data in DATA)]
"""The methods whose cells choose settings on validation, so that a probe is fitted."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, choices=list(DATA))
    parser.add_argument("--method", required=True, choices=CHOOSING)
    for name, flag in SHORTER.items():
        parser.add_argument(flag, type=_fraction, metavar="FRACTION", dest=name)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="where run folders go")
    args = parser.parse_args(argv)
    shorter = {name: getattr(args, name) for name in SHORTER if getattr(args, name) is not None}
    if len(shorter) != 1:
        parser.error(f"name exactly one of {', '.join(SHORTER.values())}")
    (name, fraction), tag = next(iter(shorter.items())), f"cpu{os.cpu_count()}"
    if name == "refit_steps" and not method_class(args.method).starts_from_probe:
        parser.error(
            f"{args.method} cannot start its final fit from its probe; --refit-steps would not change it"
        )
    if name == "refit_steps" and validation_folds(recipe(args.data, args.method)) > 1:
        parser.error(
            f"{args.data} / {args.method} chooses on several validation folds, so its final fit has no one "
            "probe to start from"
        )
    leaderboard = RESULTS / f"leaderboard-{tag}.json"
    if not leaderboard.is_file():
        parser.error(
            f"no {leaderboard}: run benchmarks/leaderboard.py --data {args.data} --method {args.method}"
        )
    cell = json.loads(leaderboard.read_text())["cells"].get(args.data, {})
    if args.method not in cell:
        parser.error(f"{args.data} / {args.method} is not on record in {leaderboard}; run the cell first")

    variant = f"{name}-{fraction:g}"
    runs = args.runs / "shorter_fits" / tag / variant
    folder = runs / args.data / args.method
    # a second run would resume its checkpoints and record a wall time of nothing
    if (folder / "metrics.json").is_file():
        parser.error(f"{folder} holds a finished run; delete it (and {runs / 'work'}) to measure again")
    command = [
        *cell_command(runs, args.data, args.method, "cpu", cache=args.runs / "leaderboard" / tag / "cache"),
        SHORTER[name],
        str(fraction),
    ]
    resumed = (runs / "work" / args.data / args.method).exists()
    print(" ".join(command[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = round(time.perf_counter() - started, 1)
    result = {
        "benchmark": "shorter_fits",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"{os.cpu_count()} CPU cores",
        "question": f"{args.data} / {args.method} with {SHORTER[name]} {fraction:g} against its leaderboard "
        "cell: the time saved, and whether the choice on validation and the test scores hold",
        "commands": {
            variant: f"uv run benchmarks/shorter_fits.py --data {args.data} --method {args.method} "
            f"{SHORTER[name]} {fraction:g}",
            "leaderboard cell": f"uv run benchmarks/leaderboard.py --data {args.data} --method {args.method}",
        },
        "resumed": resumed,  # True: a killed run went on from its checkpoints, so wall_s is not the whole fit
        "runs": {
            variant: _run_summary(folder / "metrics.json", args.method, wall),
            "leaderboard cell": _cell_summary(cell, args.method),
        },
    }
    write_result(result, "shorter_fits", f"{args.data}-{args.method}-{variant}-{tag}")
    return 0


def _run_summary(metrics_file: Path, method: str, wall: float) -> dict:
    """The variant's run: its validation record, wall time by stage, and the test scores of the method, its
    single sample, ridge and the mean image of the same run, with paired differences from ridge."""
    metrics = json.loads(metrics_file.read_text())
    return {
        "wall_s": wall,
        "seconds": metrics["seconds"][method],
        "validation": metrics.get("validation", {}).get(method),
        "test": {
            name: _scores(scores, scores.get("vs_baseline", {}))
            for name, scores in metrics["methods"].items()
            if name in ("mean", "ridge", method, f"{method}-1")
        },
    }


def _cell_summary(cell: dict[str, dict], method: str) -> dict:
    """The same of the leaderboard's record (ridge and the mean image: their cells on the same split)."""
    entry = cell[method]
    return {
        "wall_s": entry["wall_s"],
        "invocations": entry.get("invocations", 1),  # more than 1: the cell was stopped and resumed
        "seconds": entry.get("seconds"),
        "validation": entry["validation"],
        "test": {
            name: _scores(cell[name], cell[name].get("vs_ridge", {}))
            for name in ("mean", "ridge", method, f"{method}-1")
            if name in cell
        },
    }


def _scores(scores: dict, vs_ridge: dict) -> dict:
    """pcc, SSIM and 2-way, and their paired differences from ridge where the row has them."""
    metrics = ("pcc", "ssim", "twoway")
    differences = {key: vs_ridge[key] for key in metrics if key in vs_ridge}
    return {key: round(scores[key], 4) for key in metrics} | (
        {"vs_ridge": differences} if differences else {}
    )


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (1 is the leaderboard cell), got {value}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
