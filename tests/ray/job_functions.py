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
    progress.set_stage(f"busy in process {os.getpid()}")
    progress.flush() if hasattr(progress, "flush") else None
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


@dataclass
class FitRequest:
    epochs: int


def fit(request, progress) -> dict:
    """Trains a tiny model with the engine's loop for ``request.epochs`` epochs (Cancel, Stop and the time budget
    as the workflows' jobs pass them) and answers how the run ended and the weights it learned."""
    import keras

    from engine.training import train as engine_train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    history = engine_train(model, lambda t, o: keras.ops.mean((t - o) ** 2, axis=-1), x, y, epochs=request.epochs,
                           batch_size=16, seed=0, progress=progress.report, cancel=progress.cancel,
                           time_budget=progress.time_budget)
    return {"epochs_run": history.epochs_run, "stopped": history.stopped, "losses": list(history.loss),
            "weights": [np.asarray(w) for w in model.get_weights()]}


@dataclass
class StopRequest:
    wait_s: float  # how long to wait for "Stop and keep"
    linger_s: float  # how long the job then takes to answer (longer than the backend's cancel grace)


def slow_to_stop(request, progress) -> str:
    """Waits for "Stop and keep", then takes ``linger_s`` seconds to wrap up (as scoring after training does)."""
    progress.set_stage("waiting for Stop")
    deadline = time.monotonic() + request.wait_s
    while time.monotonic() < deadline and not progress.cancel.stop_requested:
        progress.cancel.raise_if_cancelled()
        time.sleep(0.02)
    if not progress.cancel.stop_requested:
        return "never saw Stop"
    progress.set_stage("wrapping up after Stop")
    progress.flush() if hasattr(progress, "flush") else None  # sent now, not at the next report
    time.sleep(request.linger_s)
    return "kept"
