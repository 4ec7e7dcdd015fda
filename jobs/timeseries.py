"""The time-series outliers workflow's jobs: train an OutlierSeq2Seq and score a series, or score with a saved one.

Both answer with every raw score the page's threshold controls need (per step and per window), so moving a
threshold never calls the model again. This module does not import streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.od import OutlierSeq2Seq
from engine.saving import detector_to_bytes, load_detector
from jobs.base import Progress


@dataclass
class FitRequest:
    """Train on the first ``n_train`` steps of ``X`` (windows every ``stride`` steps), then score all of ``X``."""

    X: np.ndarray  # (n_steps, n_features), time order, original units
    n_train: int
    seq_len: int
    latent_dim: int
    stride: int
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    percentile: float  # the archive's per-feature threshold: this percentile of the first n_train steps' scores


@dataclass
class ScoreRequest:
    """Score ``X`` with the saved detector ``archive``; thresholds from the first ``n_reference`` steps."""

    archive: bytes
    X: np.ndarray
    n_reference: int
    percentile: float


@dataclass
class Answer:
    """Every score of the series and of its windows, and the detector as archive bytes."""

    archive: bytes
    reconstruction: np.ndarray  # (n_steps, n_features), original units
    raw: np.ndarray  # (n_steps, n_features): squared error − learned estimate, before any threshold
    window_start: np.ndarray  # first step of each scored window (consecutive; the last aligned to the end)
    window_raw: np.ndarray  # (n_windows, seq_len, n_features): the raw scores as each window saw them
    window_reconstruction: np.ndarray  # (n_windows, seq_len, n_features), original units
    seq_len: int
    loss: list[float] = field(default_factory=list)  # training loss per epoch (empty when only scored)
    epochs: int = 0  # epochs asked for
    stopped: str = ""  # why training ended ('completed', 'time_budget', ...); '' when only scored


def _score(detector: OutlierSeq2Seq, X: np.ndarray, n_reference: int, percentile: float,
           progress: Progress) -> dict:
    """Raw scores of the series and of its windows; the detector's threshold set from the reference steps."""
    progress.set_stage("scoring the whole series", 1.0)
    details = detector.score_details(X)
    starts = details["window_start"]
    # The windows as the model scored them (the last one may overlap its neighbour): their own raw scores and
    # reconstructions back the window ranking and the drill-down.
    windows = detector.score_details(np.stack([X[s:s + detector.seq_len] for s in starts]))
    raw = details["raw_feature_score"]
    # Per feature, interpolated in the raw scores' own float32 as the detector's scores are.
    detector.threshold = detector.threshold_at(raw[:n_reference], percentile, axis=0, dtype=None).astype(np.float32)
    return dict(archive=detector_to_bytes(detector), reconstruction=details["reconstruction"], raw=raw,
                window_start=starts, window_raw=windows["raw_feature_score"],
                window_reconstruction=windows["reconstruction"], seq_len=int(detector.seq_len))


def fit_and_score(request: FitRequest, progress: Progress) -> Answer:
    """Train an OutlierSeq2Seq on the first ``n_train`` steps and score the whole series and its windows."""
    import keras

    X = np.asarray(request.X, dtype=np.float32)
    detector = OutlierSeq2Seq(n_features=X.shape[1], seq_len=int(request.seq_len),
                              latent_dim=int(request.latent_dim))
    progress.set_stage("training", 0.0)
    detector.fit(X[:request.n_train], window_stride=int(request.stride), epochs=int(request.epochs),
                 batch_size=int(request.batch_size),
                 optimizer=keras.optimizers.Adam(learning_rate=float(request.learning_rate)),
                 seed=int(request.seed), verbose=False, progress=progress.report, cancel=progress.cancel,
                 time_budget=progress.time_budget)
    history = detector.history_
    scored = _score(detector, X, int(request.n_train), float(request.percentile), progress)
    progress.set_stage(f"{history.epochs_run} epoch(s), final loss {history.loss[-1]:.4g}"
                       + (" (stopped at the time budget)" if history.stopped == "time_budget" else ""), 1.0)
    return Answer(**scored, loss=[float(v) for v in history.loss], epochs=int(request.epochs),
                  stopped=str(history.stopped))


def score(request: ScoreRequest, progress: Progress) -> Answer:
    """Score the series with a saved OutlierSeq2Seq, like after training (trusted mode only)."""
    progress.set_stage("loading the detector", 0.0)
    detector = load_detector(request.archive)
    if not isinstance(detector, OutlierSeq2Seq):
        raise TypeError(f"the archive holds a {type(detector).__name__}, not an OutlierSeq2Seq.")
    X = np.asarray(request.X, dtype=np.float32)
    scored = _score(detector, X, int(request.n_reference), float(request.percentile), progress)
    progress.set_stage(f"{len(X):,} steps scored with the saved detector", 1.0)
    return Answer(**scored)
