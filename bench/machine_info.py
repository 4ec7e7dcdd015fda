"""What every benchmark records about the machine it ran on (CPU model, load average), and where shared data lie."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to 0.01."""
    return [round(v, 2) for v in os.getloadavg()]


def benchdata_dir() -> Path:
    """The folder of shared benchmark data: ``$LANTERN_BENCHDATA``, else ``../shared/benchdata`` beside the repository."""
    configured = os.environ.get("LANTERN_BENCHDATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "benchdata"
