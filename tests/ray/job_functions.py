"""Job functions for the runner's tests: module-level, so Ray workers import them by reference, as ``jobs.*``."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from engine.errors import DataError
from engine.training import TrainingEvent


@dataclass
class Request:
    seconds: float = 0.0
    values: np.ndarray | None = None


def where(request, progress) -> dict:
    """Who ran me, and whether streamlit was imported there; doubles the request's values in place."""
    if request.values is not None:
        request.values *= 2  # the request is the job's own (writable) copy
    return {"pid": os.getpid(), "streamlit": "streamlit" in sys.modules, "values": request.values,
            "budget": progress.time_budget, "nice": os.getpriority(os.PRIO_PROCESS, 0)}


def train(request, progress) -> str:
    """Reports a batch event every 20 ms for ``seconds``, honouring Cancel like the engine's training loop."""
    steps = max(1, int(request.seconds / 0.02))
    for step in range(1, steps + 1):
        progress.cancel.raise_if_cancelled()
        progress.report(TrainingEvent("batch", 1, 1, step, steps, 1.0 / step, {}, 0.02 * step))
        time.sleep(0.02)
    progress.set_stage("scoring", 1.0)
    return "trained"


def stubborn(request, progress) -> str:
    """Ignores Cancel (like native code that never returns to Python)."""
    progress.set_stage("busy")
    time.sleep(request.seconds)
    return "finished anyway"


def bad_input(request, progress):
    raise DataError("column 'x' has no numbers; pick numeric columns.")


def buggy(request, progress):
    return {}["missing"]


def crash(request, progress):
    """Kills its own process, as a segfault in native code or the kernel's OOM killer would."""
    progress.set_stage("about to crash")
    progress.flush() if hasattr(progress, "flush") else None
    os._exit(1)
