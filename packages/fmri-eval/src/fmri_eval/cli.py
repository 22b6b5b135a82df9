"""Command line: evaluate a reconstructions file, print the metrics as JSON, optionally write a report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from fmri_eval import __version__
from fmri_eval.errors import EvaluationError
from fmri_eval.evaluate import evaluate_reconstructions
from fmri_eval.io import load_reconstructions
from fmri_eval.report import write_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmri-eval",
        description="Evaluate reconstructed images against the seen images and print metrics JSON.",
    )
    parser.add_argument("recon_file", metavar="RECON.npz", help="reconstructions file (see fmri_eval.io)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for CIs (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
    parser.add_argument(
        "--out", metavar="DIR", help="also write metrics.json, report.md and the reconstruction grid to DIR"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 on success and 2 on bad input (one-line message on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        recon_set = load_reconstructions(args.recon_file)
        if args.out:
            methods = write_run(
                args.out,
                dataset=Path(args.recon_file).stem,
                split="as saved in " + Path(args.recon_file).name,
                truth=recon_set.truth,
                stimulus_id=recon_set.stimulus_id,
                reconstructions=recon_set.reconstructions,
                trial_index=recon_set.trial_index,
                command=shlex.join(["fmri-eval", *(sys.argv[1:] if argv is None else argv)]),
                n_boot=args.n_boot,
                seed=args.seed,
            )["methods"]
        else:
            methods = evaluate_reconstructions(
                recon_set.truth,
                recon_set.reconstructions,
                recon_set.stimulus_id,
                n_boot=args.n_boot,
                seed=args.seed,
            )
    except (EvaluationError, OSError) as exc:
        print(f"fmri-eval: error: {exc}", file=sys.stderr)
        return 2
    output = {"file": args.recon_file, "n_test": int(recon_set.truth.shape[0]), "methods": methods}
    print(json.dumps(output, indent=2, allow_nan=False))
    return 0
