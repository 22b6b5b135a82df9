"""Peak resident memory of one stretch of work in this process (Linux: /proc/self, reset by clear_refs)."""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark so that VmHWM covers what runs next alone; return the RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def peak_rss_mb() -> float:
    """The peak RSS since the last reset_peak_rss."""
    return status_mb("VmHWM")
