"""What several unit-test files share: small generated data sets, a loss, a progress callback that interrupts."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np


def blobs(n: int = 240, d: int = 8, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows in [0, 1]^d around ``k`` fixed centres (the same centres for every ``seed``); labels ``0..k-1``.

    Examples
    --------
    >>> X, y = blobs(n=6, seed=1)
    >>> X.shape, X.dtype.name, y.tolist()
    ((6, 8), 'float32', [0, 1, 2, 0, 1, 2])
    """
    centres = np.random.default_rng(100).uniform(0.3, 0.7, size=(k, d))
    y = np.arange(n) % k
    X = np.clip(centres[y] + np.random.default_rng(seed).normal(scale=0.05, size=(n, d)), 0, 1).astype("float32")
    return X, y


def toy_regression(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of 4 standard-normal features and a linear target (weights 1, -2, 0.5, 0; offset 0.3)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32") + 0.3).astype("float32")
    return x, y


def mse(target, outputs):
    """Per-row mean squared error, as a loss for ``engine.training.train``."""
    return keras.ops.mean((target - outputs) ** 2, axis=-1)


def interrupting(action: Callable[[], None], when: Callable) -> tuple[Callable, list]:
    """A progress callback that records every event and calls ``action()`` (e.g. ``token.stop``) on each event for
    which ``when(event)`` holds; the callback and its list of events."""
    events: list = []

    def progress(event) -> None:
        events.append(event)
        if when(event):
            action()

    return progress, events
