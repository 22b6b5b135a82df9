"""`fmri-data` / `python -m fmri_data`: inspect a data set (`info`) or fetch one (`download`): a catalog file,
or an NSD subject's files (`download nsd --subject N`).

Data problems end as one line "fmri-data: error: ..." on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmri_data.catalog import CATALOG, cache_dir
from fmri_data.dataset import PairedDataset
from fmri_data.download import download
from fmri_data.errors import DataError, run_cli
from fmri_data.io import load_dataset
from fmri_data.nsd_download import NSD_BUCKET, download_nsd, parse_sessions
from fmri_data.splits import Split


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)

    def run() -> int:
        if args.command == "info":
            print(describe(load_dataset(args.dataset)))
        elif args.name == "nsd":
            if args.force:
                raise DataError(
                    "download nsd has no --force: it continues partial files and verifies the rest"
                )
            root = Path(args.root or args.dest or cache_dir() / "nsd")
            sessions = parse_sessions(args.sessions) if args.sessions else None
            download_nsd(root, args.subject, sessions, base_url=args.base_url)
            print(f"{root}  (use it as --nsd-root)")
        else:
            print(download(args.name, dest_dir=args.dest, force=args.force))
        return 0

    return run_cli("fmri-data", run)


def describe(dataset: PairedDataset) -> str:
    """A short report: sizes, stimulus repeats, labels and runs, and whether the given split leaks."""
    repeats = np.unique(dataset.stimulus_id, return_counts=True)[1]
    rows = {
        "name": dataset.name,
        "source": dataset.metadata.get("source", "-"),
        "trials": dataset.n_trials,
        "voxels": dataset.n_voxels,
        "image size": "x".join(map(str, dataset.image_shape)) + (" RGB" if dataset.is_colour else ""),
        "distinct stimuli": dataset.n_stimuli,
        "repeats": (
            f"trials per stimulus min {repeats.min()}, median {np.median(repeats):g}, max {repeats.max()}"
        ),
        "labels": _distinct(dataset.labels),
        "runs": _distinct(dataset.run),
        "given split": _given_split(dataset),
    }
    return "\n".join(f"{key + ':':<18}{value}" for key, value in rows.items())


def _distinct(values: np.ndarray | None) -> str:
    if values is None:
        return "none"
    distinct = np.unique(values)
    return f"{distinct.size} distinct ({distinct.min()}..{distinct.max()})"


def _given_split(dataset: PairedDataset) -> str:
    if dataset.given_test is None:
        return "no given split"
    given_test = dataset.given_test
    split = Split(name="given", train=np.flatnonzero(~given_test), test=np.flatnonzero(given_test))
    n_test_stimuli = np.unique(dataset.stimulus_id[split.test]).size
    shared = split.overlap(dataset.stimulus_id).size
    verdict = "LEAKS: it measures memorisation" if shared else "no leak"
    return (
        f"{split.train.size} train / {split.test.size} test trials; "
        f"{shared} of {n_test_stimuli} test stimuli also in training ({verdict})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmri-data", description="Inspect fMRI image-reconstruction data sets and fetch public ones."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="summarise a data set: sizes, repeats, runs, given-split leaks")
    names = ", ".join(CATALOG)
    info.add_argument("dataset", metavar="FILE_OR_NAME", help=f"sim, {names} or a .mat/.npz file")
    fetch = commands.add_parser(
        "download", help="download a catalog data set (checked by sha256), or an NSD subject (resumable)"
    )
    fetch.add_argument("name", choices=[*sorted(CATALOG), "nsd"], metavar="NAME", help=f"{names} or nsd")
    fetch.add_argument("--dest", metavar="DIR", help="folder to put it in (default: the user cache)")
    fetch.add_argument("--force", action="store_true", help="download again even if the file is there")
    nsd = fetch.add_argument_group("nsd: what the NSD loader reads of one subject, in the bucket's layout")
    nsd.add_argument("--subject", type=int, default=1, help="NSD subject 1-8 (default 1)")
    nsd.add_argument("--sessions", metavar="1-40", help="sessions to fetch, e.g. 1-10 or 1,3 (default: all)")
    nsd.add_argument(
        "--root", metavar="DIR", help="the NSD root to fill (or --dest; default: the cache's nsd/)"
    )
    nsd.add_argument("--base-url", default=NSD_BUCKET, help=f"where the files are (default {NSD_BUCKET})")
    return parser
