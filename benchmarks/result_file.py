"""Where a benchmark writes its results: benchmarks/results/<benchmark>-<tag>.json, unless --out says so."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def device_tag(device_name: str) -> str:
    """A file-name tag for a device ("NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3")."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")


def write_result(result: dict, benchmark: str, tag: str, out: Path | None = None) -> Path:
    """Write `result` as indented JSON and print it; returns the file written."""
    out = out or RESULTS / f"{benchmark}-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return out


def comma_separated(allowed: Iterable[str]) -> Callable[[str], list[str]]:
    """An argparse type: "a,b" -> ["a", "b"], each one of `allowed` (else a one-line usage error)."""
    allowed = tuple(allowed)

    def parse(text: str) -> list[str]:
        names = text.split(",")
        if unknown := [name for name in names if name not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; use {', '.join(allowed)}")
        return names

    return parse


def torch_run_header(benchmark: str, args: argparse.Namespace) -> dict:
    """The opening fields of a torch benchmark's result: what ran, when, on which device, with which options
    (`args.device`: "cpu" or "cuda")."""
    import torch

    cuda = args.device == "cuda"
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "settings": {key: str(value) for key, value in vars(args).items()},
    }


def write_torch_result(result: dict, args: argparse.Namespace) -> Path:
    """write_result under the device's tag, or "small" for a run of the tiny stand-in (`args.small`)."""
    tag = "small" if args.small else device_tag(result["device"])
    return write_result(result, result["benchmark"], tag, args.out)


def describe_machine() -> dict:
    """Python, CPU and (where torch sees one) GPU of this machine, for a result file's header."""
    info = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info
