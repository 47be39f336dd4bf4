"""Peak-memory helpers shared by the benchmark scripts (Linux /proc; getrusage elsewhere)."""

from __future__ import annotations

import gc
import resource
from pathlib import Path


def status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def start_peak() -> float:
    """Resets the peak RSS where Linux allows it; returns the baseline to subtract (MB)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
        rss = status_mb("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_mb() -> float:
    peak = status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
