"""The heavy part of each workflow's job, as a task a worker process can run (see :mod:`ui.workers`).

A task is ``fn(job, params, arrays) -> (values, arrays)``: ``params`` and ``values`` are JSON,
``arrays`` are numeric numpy arrays; a trained detector travels as its archive bytes (the same
JSON config + weights format as a download, see :mod:`engine.saving`), and a model a visitor uploaded
travels as its file's bytes and is loaded again by the job (see :mod:`jobs.models`). ``job`` offers ``report``
(the engine's progress callback), ``set_stage`` and ``cancel``, in a worker as in a thread, so a task
runs the same either way. This module does not import streamlit.

Which jobs are tasks: the Keras trainings not yet moved to :mod:`jobs` (AEGMM, Seq2Seq) and scoring with a
saved detector (trusted mode); the adversarial, CEM and anchors jobs are typed jobs in :mod:`jobs`
(:mod:`jobs.models`, :mod:`jobs.adversarial`, :mod:`jobs.explain`).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any, Callable

import keras
import numpy as np

from engine.od import OutlierAEGMM, OutlierSeq2Seq
from engine.saving import detector_to_bytes, load_detector

Task = Callable[[Any, dict, dict], tuple[dict, dict]]
TASKS: dict[str, Task] = {}


def task(name: str) -> Callable[[Task], Task]:
    """Register a task under ``name``."""

    def register(fn: Task) -> Task:
        TASKS[name] = fn
        return fn

    return register


def archive_array(detector: Any) -> np.ndarray:
    """A detector's archive as a uint8 array (how a trained model leaves a worker)."""
    return np.frombuffer(detector_to_bytes(detector), dtype=np.uint8)


class ArchivedDetector:
    """A trained detector that came back from a worker as its archive; the model is built here only when used.

    A page's charts and threshold controls need only the scores, so most sessions never build the
    networks in the server process (no interpreter time, no memory for them). The archive is the one
    the worker made with :func:`engine.saving.detector_to_bytes`, read back with the same checks as any
    archive.

    Examples
    --------
    >>> held = ArchivedDetector(archive_array(detector).tobytes())   # doctest: +SKIP
    >>> held.load().score(X)                                         # doctest: +SKIP
    """

    def __init__(self, archive: bytes) -> None:
        self.archive = archive
        self._detector = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The detector, built from the archive on first use."""
        with self._lock:
            if self._detector is None:
                self._detector = load_detector(self.archive)
            return self._detector

    def to_bytes(self, **attributes: Any) -> bytes:
        """The archive, with ``attributes`` (e.g. a chosen ``threshold``) set on the detector first; as is without."""
        if not attributes:
            return self.archive
        detector = self.load()
        with self._lock:
            for name, value in attributes.items():
                setattr(detector, name, value)
            return detector_to_bytes(detector)


def _fit_options(job, params: dict) -> dict:
    """The training arguments every detector task shares (from ``ui.training.TrainingControls.params``)."""
    return dict(epochs=int(params["epochs"]), batch_size=int(params["batch_size"]),
                optimizer=keras.optimizers.Adam(learning_rate=float(params["learning_rate"])),
                seed=int(params["seed"]), verbose=False, progress=job.report, cancel=job.cancel,
                time_budget=params.get("time_budget"))


def _stage_after_training(job, history, outcome: str | None = None) -> dict:
    """Say how training ended (epochs, ``outcome`` or the final loss, the time budget) and return the history as JSON."""
    job.set_stage(f"{history.epochs_run} epoch(s), {outcome or f'final loss {history.loss[-1]:.4g}'}"
                  + (" (stopped at the time budget)" if history.stopped == "time_budget" else ""), 1.0)
    return asdict(history)


