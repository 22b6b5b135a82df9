"""Fit time and peak memory of fmri_encoders.RidgeEncoder vs scikit-learn's RidgeCV, measured in one run.

Both search the same 8 alphas with the same 5 folds. Each case runs in its own process, so the peak resident
memory (and, on GPU, torch's peak allocation) belongs to that case alone. Where scikit-learn's whole search
would take too long (NSD's full scale on a lent GPU's CPUs), `--sklearn-projected` times one of its fits
(one fold, one alpha) and projects the search as (alphas x folds + 1 refit) such fits, each the same size;
the result says so. Results go to
benchmarks/results/ridge_scaling-<device>.json and a Markdown table is printed.

    uv run benchmarks/ridge_scaling.py                          # both scales, every backend available
    uv run benchmarks/ridge_scaling.py --scales digit69 --timeout 600
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from peak_memory import peak_rss_mb, reset_peak_rss
from result_file import describe_machine

SCALES = {  # name: (trials, voxels, targets)
    "digit69": (90, 3092, 784),
    "nsd-2k": (2000, 15724, 16384),  # NSD voxels and targets, fewer trials: fits a 2-core CPU's hour
    "nsd": (8859, 15724, 16384),
    "nsd-full": (27750, 15724, 16384),  # NSD subject 1's every trial: a GPU's scale
}
ALPHAS = np.logspace(0, 7, 8)
FOLDS = 5
CHECK_TARGETS = 256  # predictions compared across backends on this many targets
REPEATS = {"digit69": 7}  # sub-second fits are timed several times (median reported); large ones once


def make_data(scale: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    n, v, t = SCALES[scale]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, v), dtype=np.float32)
    W = rng.standard_normal((v, t), dtype=np.float32) / np.sqrt(v)
    Y = X @ W + rng.standard_normal((n, t), dtype=np.float32)
    return X, Y


def run_case(scale: str, impl: str, backend: str) -> dict:
    """Runs inside the child process: fit once, report time and peak memory."""
    X, Y = make_data(scale)
    if impl == "fmri_encoders":
        from fmri_encoders.ridge import RidgeEncoder
    else:
        from sklearn.linear_model import Ridge, RidgeCV
        from sklearn.model_selection import KFold
    baseline_mb = reset_peak_rss()
    gpu = backend == "torch_cuda"
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(REPEATS.get(scale, 1)):
        start = time.perf_counter()
        if impl == "fmri_encoders":
            model = RidgeEncoder(alphas=ALPHAS, cv=FOLDS, per_target=True, backend=backend).fit(X, Y)
            if gpu:
                torch.cuda.synchronize()
        elif impl == "sklearn-one-fit":
            train, _ = next(KFold(FOLDS).split(X))
            model = Ridge(alpha=ALPHAS[0]).fit(X[train], Y[train])
        else:
            model = RidgeCV(alphas=ALPHAS, cv=KFold(FOLDS)).fit(X, Y)
        times.append(time.perf_counter() - start)
    prediction = model.predict(X[:64])[:, :CHECK_TARGETS]
    result = {
        "scale": scale,
        "impl": impl,
        "backend": backend,
        "fit_seconds": round(float(np.median(times)), 3),
        "fit_seconds_all": [round(t, 3) for t in times],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_fit_mb": round(baseline_mb, 1),
    }
    if gpu:
        result["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if impl == "sklearn-one-fit":
        result["projected_fits"] = len(ALPHAS) * FOLDS + 1
        result["projected_fit_seconds"] = round(result["fit_seconds"] * result["projected_fits"], 1)
    np.save(Path(sys.argv[-1]), prediction.astype(np.float32))
    return result


def available_backends() -> list[str]:
    backends = ["numpy"]
    try:
        import torch

        if torch.cuda.is_available():
            backends.append("torch_cuda")
    except ImportError:
        pass
    return backends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="digit69,nsd", help="comma-separated: " + ", ".join(SCALES))
    parser.add_argument("--backends", help="comma-separated himalaya backends (default: all available)")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument(
        "--sklearn-projected",
        action="store_true",
        help="time one of scikit-learn's fits and project its whole search (for scales it cannot finish)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a case is abandoned")
    parser.add_argument(
        "--out", type=Path, help="results JSON (default benchmarks/results/ridge_scaling-X.json)"
    )
    parser.add_argument("--case", nargs=4, help=argparse.SUPPRESS)  # internal: scale impl backend npy
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case[:3])))
        return 0

    machine = describe_machine()
    backends = args.backends.split(",") if args.backends else available_backends()
    cases = [(s, "fmri_encoders", b) for s in args.scales.split(",") for b in backends]
    if not args.skip_sklearn:
        sklearn = "sklearn-one-fit" if args.sklearn_projected else "sklearn"
        cases += [(s, sklearn, "numpy") for s in args.scales.split(",")]
    results, scratch = [], Path(args.out or "benchmarks/results").resolve().parent / ".ridge_scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    for scale, impl, backend in cases:
        npy = scratch / f"{scale}-{impl}-{backend}.npy"
        print(f"{scale:8s} {impl:14s} {backend:10s} ...", end=" ", flush=True)
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--case", scale, impl, backend, str(npy)],
                capture_output=True,
                text=True,
                timeout=args.timeout,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            result = {"scale": scale, "impl": impl, "backend": backend, "timed_out_after_s": args.timeout}
        except subprocess.CalledProcessError as error:
            result = {
                "scale": scale,
                "impl": impl,
                "backend": backend,
                "error": error.stderr.strip().splitlines()[-1],
            }
        print(result.get("fit_seconds", result.get("timed_out_after_s", result.get("error"))))
        results.append(result)
    _compare_predictions(results, scratch)
    for npy in scratch.glob("*.npy"):
        npy.unlink()
    scratch.rmdir()
    _add_speedups(results)

    device = "gpu" if "gpu" in machine else f"cpu{machine['cpu_count']}"
    out = args.out or Path("benchmarks/results") / f"ridge_scaling-{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "alphas": ALPHAS.tolist(),
        "folds": FOLDS,
        "scales": {k: SCALES[k] for k in args.scales.split(",")},
        "fmri_encoders_settings": "per-target alphas; kernel form (himalaya) or primal form (Cholesky "
        "factors of X^T X + alpha I in float64), chosen by shape",
        "sklearn_settings": "RidgeCV(alphas, cv=KFold(5)): one shared alpha (sklearn has per-target "
        "alphas only for its leave-one-out mode)",
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(_table(results))
    print(f"wrote {out}")
    return 0


def _compare_predictions(results: list[dict], scratch: Path) -> None:
    """Max |difference| of each fmri_encoders backend's predictions from the numpy backend's."""
    for result in results:
        if result["impl"] != "fmri_encoders" or result["backend"] == "numpy":
            continue
        mine = scratch / f"{result['scale']}-fmri_encoders-{result['backend']}.npy"
        reference = scratch / f"{result['scale']}-fmri_encoders-numpy.npy"
        if mine.exists() and reference.exists():
            a, b = np.load(mine), np.load(reference)
            result["max_abs_diff_vs_numpy"] = float(np.abs(a - b).max())
            result["max_rel_diff_vs_numpy"] = float(np.abs(a - b).max() / np.abs(b).max())


def _add_speedups(results: list[dict]) -> None:
    sklearn = {r["scale"]: r.get("fit_seconds") for r in results if r["impl"] == "sklearn"}
    projected = {
        r["scale"]: r.get("projected_fit_seconds") for r in results if r["impl"] == "sklearn-one-fit"
    }
    for result in results:
        seconds = result.get("fit_seconds")
        if result["impl"] != "fmri_encoders" or not seconds:
            continue
        if sklearn.get(result["scale"]):
            result["speedup_vs_sklearn"] = round(sklearn[result["scale"]] / seconds, 2)
        elif projected.get(result["scale"]):
            result["speedup_vs_sklearn_projected"] = round(projected[result["scale"]] / seconds, 2)


def _table(results: list[dict]) -> str:
    lines = [
        "| scale | implementation | backend | fit (s) | peak RSS (MB) | GPU peak (MB) | vs sklearn |",
        # sklearn-one-fit rows: one fold and alpha timed; "vs sklearn" then compares with its projection
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fit = r.get("fit_seconds", f"> {r['timed_out_after_s']}" if "timed_out_after_s" in r else "error")
        lines.append(
            f"| {r['scale']} | {r['impl']} | {r['backend']} | {fit} | {r.get('peak_rss_mb', '')} | "
            f"{r.get('gpu_peak_mb', '')} | "
            f"{r.get('speedup_vs_sklearn', r.get('speedup_vs_sklearn_projected', ''))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
