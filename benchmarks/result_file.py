"""Where a benchmark writes its results: benchmarks/results/<benchmark>-<tag>.json, unless --out says so."""

from __future__ import annotations

import json
import os
import platform
import re
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
