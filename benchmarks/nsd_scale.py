"""Time and peak memory per stage at the Natural Scenes Dataset's scale, on its simulated twin.

Stages, each timed with the peak resident memory of this process reset before it (and torch's peak GPU
allocation where there is a GPU):
  write   the NSD-layout simulation (fmri_data.simulator.nsd_layout; skipped when --root already holds one)
  load    fmri_data.loaders.nsd streams it session by session through the nsdgeneral mask
  ridge   fmri -> 64x64 pixels, alpha per pixel chosen by 5-fold CV on the given training trials, batched
          over targets and alphas (himalaya's torch_cuda backend on a GPU), scored on the test trials (the
          shared images)
  sd-lora, brain-diffuser
          each method's whole fit and sampling through reconstruct_over_splits with --quick training
          budgets (a few steps: the data path, the ridges and the encodings are full size)
The ridge and the fits use the first --fit-sessions sessions (default: all). On 2 CPU cores a ridge on all
24,750 training trials takes hours (a 19,800 x 15,724 SVD per fold): that scale is for the GPU.
Results go to benchmarks/results/nsd_scale-<device>.json.

    uv run benchmarks/nsd_scale.py --root /data/nsd-sim                   # everything at full scale
    uv run benchmarks/nsd_scale.py --root /data/nsd-sim --fit-sessions 4  # the fits on 3,000 trials
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from peak_memory import peak_rss_mb, reset_peak_rss
from result_file import describe_machine, write_result

from fmri_data.loaders.nsd import load_nsd
from fmri_data.methods import MethodSettings, reconstruct_over_splits
from fmri_data.simulator.nsd_layout import NsdScale, write_nsd_simulation
from fmri_data.splits import make_splits
from fmri_encoders.ridge import RidgeEncoder
from fmri_encoders.runtime import resolve_device, ridge_backend
from fmri_eval.metrics import pcc

STAGES = ("write", "load", "ridge", "sd-lora", "brain-diffuser")
_COMPLETE = ".simulation-complete"


def measure(name: str, work: Callable[[], Any], records: list[dict]) -> Any:
    """Run `work`, append its stage record (seconds, peak RSS, GPU peak) and print it."""
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    before = reset_peak_rss()
    start = time.perf_counter()
    result = work()
    record = {
        "stage": name,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),
    }
    if cuda is not None:
        record["gpu_peak_mb"] = round(cuda.max_memory_allocated() / 2**20, 1)
    records.append(record)
    print(record, flush=True)
    return result


def _cuda() -> Any:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="where the simulation lies or is written")
    parser.add_argument("--sessions", type=int, default=NsdScale.n_sessions, help="sessions simulated")
    parser.add_argument("--fit-sessions", type=int, help="sessions the method fits use (default: all)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated: " + ", ".join(STAGES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/nsd_scale-X.json)")
    args = parser.parse_args()
    stages = args.stages.split(",")
    scale = NsdScale(n_sessions=args.sessions)
    device = resolve_device(args.device)
    records: list[dict] = []

    if "write" in stages and not (args.root / _COMPLETE).is_file():
        measure("write", lambda: write_nsd_simulation(args.root, scale, progress=print), records)
        (args.root / _COMPLETE).write_text("done\n")
    dataset = measure("load", lambda: load_nsd(args.root, 1, image_size=64), records)
    print(f"{dataset.n_trials} trials x {dataset.n_voxels} voxels, {dataset.n_stimuli} images", flush=True)
    summary: dict[str, Any] = {"trials": dataset.n_trials, "voxels": dataset.n_voxels}
    fit_on = dataset
    if args.fit_sessions:
        fit_on = dataset.subset(np.flatnonzero(dataset.run <= args.fit_sessions))
    summary["fit_trials"] = fit_on.n_trials
    if "ridge" in stages:
        summary["ridge_test_pcc"] = measure(
            f"ridge ({fit_on.n_trials} trials)", lambda: _ridge(fit_on, device), records
        )
    for method in ("sd-lora", "brain-diffuser"):
        if method in stages:
            settings = MethodSettings(device=device, quick=True, progress=False)
            splits = make_splits(fit_on, "given")
            measure(
                f"{method} ({fit_on.n_trials} trials, quick budgets)",
                lambda m=method, s=settings, sp=splits: reconstruct_over_splits(
                    fit_on, sp, [m], settings=s, progress=False
                ),
                records,
            )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "device": device,
        "torch_threads": _threads(),
        "scale": asdict(scale),
        "data": summary,
        "stages": records,
        "command": "uv run benchmarks/nsd_scale.py " + " ".join(sys.argv[1:]),
    }
    tag = f"cpu{os.cpu_count()}" if device == "cpu" else device
    write_result(result, "nsd_scale", tag, args.out)
    return 0


def _ridge(dataset: Any, device: str) -> float:
    """Fit on the given training trials, return the mean per-image pcc on the test trials."""
    train, test = dataset.subset(~dataset.given_test), dataset.subset(dataset.given_test)
    ridge = RidgeEncoder(backend=ridge_backend(device), n_targets_batch=1024)
    ridge.fit(train.fmri, train.images.reshape(train.n_trials, -1), groups=train.stimulus_id)
    predicted = ridge.predict(test.fmri).reshape(test.images.shape)
    return float(np.mean(pcc(test.images, np.clip(predicted, 0, 1))))


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    raise SystemExit(main())
