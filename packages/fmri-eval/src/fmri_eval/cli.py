"""Command line: score a reconstructions file as its run did, print the metrics JSON or check metrics.json."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from fmri_eval import __version__
from fmri_eval.errors import EvaluationError
from fmri_eval.evaluate import DEFAULT_BASELINE, check_baseline, choose_baseline, evaluate_run
from fmri_eval.io import ReconstructionSet, load_reconstructions
from fmri_eval.run import SCORED_KEYS, check_run_folder, write_run
from fmri_eval.settings import EvaluationSettings

CHECK_TOLERANCE = 1e-9


class _OneLineParser(argparse.ArgumentParser):
    """Bad options end in one line on stderr and exit 2, like every other bad input here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _integer_from(lowest: int):
    """An argparse type: a whole number >= lowest, refused in words otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be {lowest} or more, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="fmri-eval",
        description="Score reconstructed images against the seen images and print the metrics JSON. "
        "By default the file is scored with the settings its run saved in it, so the numbers are those "
        "of the run's metrics.json.",
    )
    parser.add_argument("recon_file", metavar="RECON.npz", help="reconstructions file (see fmri_eval.io)")
    parser.add_argument(
        "--n-boot",
        type=_integer_from(1),
        help="bootstrap resamples for the CIs (default: as saved, else 2000)",
    )
    parser.add_argument("--seed", type=_integer_from(0), help="bootstrap seed (default: as saved, else 0)")
    parser.add_argument(
        "--baseline",
        metavar="NAME",
        help=f"method the paired differences are taken from (default: as saved, else {DEFAULT_BASELINE} "
        "where the file has it)",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--out", metavar="DIR", help="also write metrics.json, report.md and the reconstruction grid to DIR"
    )
    action.add_argument(
        "--check",
        action="store_true",
        help=f"compare with the metrics.json beside the file (to {CHECK_TOLERANCE:g}); exit 1 if they differ",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _settings(recon_set: ReconstructionSet, args: argparse.Namespace) -> EvaluationSettings:
    """The file's saved settings, with the options given on the command line taking precedence.

    A file written before settings were saved gets the defaults, ridge as baseline where it has it, and
    its repeat averaging marked as not recorded.
    """
    names = list(recon_set.reconstructions)
    saved = recon_set.settings or EvaluationSettings(baseline=choose_baseline(names), repeats_averaged=None)
    overrides = {"n_boot": args.n_boot, "seed": args.seed, "baseline": args.baseline}
    settings = dataclasses.replace(
        saved, **{key: value for key, value in overrides.items() if value is not None}
    )
    if settings.baseline is not None:
        check_baseline(settings.baseline, names)
    return settings


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def first_difference(
    expected: Any, actual: Any, path: str = "", tolerance: float = CHECK_TOLERANCE
) -> str | None:
    """Where two JSON values first differ (numbers within `tolerance` agree), or None."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(expected) != list(actual):
            return f"{path or 'top level'}: keys {list(expected)} vs {list(actual)}"
        for key in expected:
            found = first_difference(expected[key], actual[key], f"{path}.{key}".lstrip("."), tolerance)
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = first_difference(left, right, f"{path}[{index}]", tolerance)
            if found:
                return found
        return None
    if _is_number(expected) and _is_number(actual):
        if math.isclose(expected, actual, rel_tol=0.0, abs_tol=tolerance):
            return None
    elif type(expected) is type(actual) and expected == actual:
        return None
    return f"{path}: {expected!r} vs {actual!r}"


def _saved_scores(recon_file: Path) -> dict[str, Any]:
    """The scores in the metrics.json beside `recon_file`, read before any scoring (--check)."""
    metrics_file = recon_file.parent / "metrics.json"
    try:
        saved = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvaluationError(
            f"cannot read {metrics_file} to check against ({exc}); run without --check"
        ) from exc
    missing = [key for key in SCORED_KEYS if key not in saved]
    if missing:
        raise EvaluationError(f"{metrics_file} has no {missing}; it was written by an older fmri-eval")
    return {key: saved[key] for key in SCORED_KEYS}


def _check(recon_file: Path, saved: dict[str, Any], scored: dict[str, Any]) -> int:
    metrics_file = recon_file.parent / "metrics.json"
    difference = first_difference(saved, scored)
    if difference:
        print(f"fmri-eval: {metrics_file} is NOT reproduced: {difference}", file=sys.stderr)
        return 1
    n_methods = len(scored["methods"])
    print(
        f"fmri-eval: {metrics_file} reproduced ({n_methods} methods, every value within {CHECK_TOLERANCE:g})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 when --check finds a difference, 2 on bad input (one line)."""
    args = build_parser().parse_args(argv)
    recon_file = Path(args.recon_file)
    try:
        recon_set = load_reconstructions(recon_file)
        settings = _settings(recon_set, args)
        saved = _saved_scores(recon_file) if args.check else None
        if args.out:
            check_run_folder(args.out, "--out")
            run = write_run(
                args.out,
                dataset=recon_file.stem,
                split="as saved in " + recon_file.name,
                truth=recon_set.truth,
                stimulus_id=recon_set.stimulus_id,
                reconstructions=recon_set.reconstructions,
                trial_index=recon_set.trial_index,
                settings=settings,
                command=shlex.join(["fmri-eval", *(sys.argv[1:] if argv is None else argv)]),
            )
            scored = {key: run[key] for key in SCORED_KEYS}
        else:
            scored = evaluate_run(recon_set.truth, recon_set.reconstructions, recon_set.stimulus_id, settings)
        if saved is not None:
            return _check(recon_file, saved, scored)
    except (EvaluationError, OSError) as exc:
        print(f"fmri-eval: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"file": args.recon_file, **scored}, indent=2, allow_nan=False))
    return 0
