"""A small job for the session tests: trains a tiny regression with the engine's loop, scores it, answers."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

STARTED = threading.Event()  # set once the running job has trained its first batch


@dataclass
class FitRequest:
    epochs: int
    run: int  # which press of Train this is (the page shows it, so a test knows whose results are on screen)


@dataclass
class FitAnswer:
    run: int
    epochs_run: int
    stopped: str
    loss: float
    flagged: int


def fit(request: FitRequest, progress) -> FitAnswer:
    """Train a one-layer model on 64 rows for ``request.epochs`` epochs (stoppable), then score the rows."""
    import keras

    from engine.training import train

    rng = np.random.default_rng(request.run)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])

    def report(event):
        progress.report(event)
        STARTED.set()

    history = train(model, lambda t, o: keras.ops.mean((t - o) ** 2, axis=-1), x, y, epochs=request.epochs,
                    batch_size=16, seed=0, progress=report, cancel=progress.cancel,
                    time_budget=progress.time_budget)
    errors = np.abs(np.asarray(model(x)) - y).ravel()
    return FitAnswer(request.run, history.epochs_run, history.stopped, history.loss[-1],
                     int((errors > np.percentile(errors, 90)).sum()))
