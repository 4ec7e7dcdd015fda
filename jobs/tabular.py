"""Tabular outliers' jobs: train an OutlierAEGMM and score every row, or score every row with a saved one.

Called by reference from ``pages/tabular_outliers.py``::

    training.start_job("aegmm", "Train AEGMM", jobs.tabular.fit_and_score, FitRequest(...), context=...)

The trained detector comes back as its archive bytes, carrying its threshold, the percentile it was chosen at,
the training score distribution (101 quantiles) and the preprocessing of the table's columns (see
:mod:`engine.saving`). This module never imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from engine.od import OutlierAEGMM
from engine.saving import detector_to_bytes, load_detector
from jobs.base import Progress
from workflows.tabular import DEFAULT_PERCENTILE, EXPLAINED_ROWS, reference_quantiles


@dataclass
class FitRequest:
    """Train on the rows ``train_mask`` of ``X``, then score every row of ``X``."""

    X: np.ndarray
    train_mask: np.ndarray
    n_gmm: int = 2
    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-3
    seed: int = 0
    threshold_perc: float = DEFAULT_PERCENTILE  # the threshold the archive starts with: this percentile of training
    feature_names: list[str] | None = None
    preprocessing: dict | None = None  # how the table's columns became X (stored in the archive)
    explained_rows: int = EXPLAINED_ROWS


@dataclass
class ScoreRequest:
    """Score every row of ``X`` with the saved detector ``archive``."""

    X: np.ndarray
    archive: bytes
    explained_rows: int = EXPLAINED_ROWS


@dataclass
class ScoredAnswer:
    """Every row's score, the per-feature errors of the highest-scoring rows, and the detector's archive."""

    scores: np.ndarray
    top: np.ndarray  # positions of the ``explained_rows`` highest-scoring rows
    top_errors: np.ndarray  # their per-feature reconstruction errors (the page's row picker never calls the model)
    archive: bytes
    threshold: float | None = None  # the detector's threshold
    threshold_perc: float | None = None  # the percentile of the training scores it was chosen at
    reference: np.ndarray | None = None  # the training score distribution the detector carries (sorted)
    history: dict = field(default_factory=dict)


def _explained(detector: OutlierAEGMM, X: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    top = np.argsort(-scores, kind="stable")[:int(n)]
    return top, detector.feature_reconstruction_error(X[top])


def fit_and_score(request: FitRequest, progress: Progress) -> ScoredAnswer:
    """Train an OutlierAEGMM on the training rows, score every row, explain the top rows.

    The detector's threshold is the ``threshold_perc`` percentile of the training rows' scores; it keeps that
    percentile and the training scores' quantiles (``threshold_perc_``, ``reference_scores_``) for its archive.
    """
    X, train_mask = request.X, np.asarray(request.train_mask, dtype=bool)
    detector = OutlierAEGMM(n_gmm=int(request.n_gmm), data_type="tabular")
    progress.set_stage("training", 0.0)
    detector.fit(X[train_mask], epochs=int(request.epochs), batch_size=int(request.batch_size),
                 optimizer=keras.optimizers.Adam(learning_rate=float(request.learning_rate)), seed=int(request.seed),
                 verbose=False, progress=progress.report, cancel=progress.cancel, time_budget=progress.time_budget)
    progress.set_stage("scoring all rows", 1.0)
    scores = detector.score(X)
    train_scores = scores[train_mask]
    detector.threshold = detector.percentile_threshold(train_scores, request.threshold_perc)
    detector.threshold_perc_ = float(request.threshold_perc)
    detector.reference_scores_ = reference_quantiles(train_scores)
    detector.feature_names_ = None if request.feature_names is None else [str(n) for n in request.feature_names]
    detector.preprocessing_ = request.preprocessing
    top, errors = _explained(detector, X, scores, request.explained_rows)
    history = detector.history_
    loss = f", final loss {history.loss[-1]:.4g}" if history.loss else ""
    progress.set_stage(f"{history.epochs_run} epoch(s){loss}"
                       + (" (stopped at the time budget)" if history.stopped == "time_budget" else ""), 1.0)
    return ScoredAnswer(scores, top, errors, detector_to_bytes(detector), detector.threshold,
                        detector.threshold_perc_, detector.reference_scores_,
                        {"epochs_run": int(history.epochs_run), "stopped": history.stopped})


def score(request: ScoreRequest, progress: Progress) -> ScoredAnswer:
    """Score every row of ``X`` with a saved OutlierAEGMM; explain the top rows; pass on what its archive carries."""
    progress.set_stage("loading the detector", 0.0)
    detector = load_detector(request.archive)
    progress.set_stage("scoring all rows", 0.5)
    scores = detector.score(request.X)
    top, errors = _explained(detector, request.X, scores, request.explained_rows)
    progress.set_stage(f"{len(request.X):,} rows scored with the saved detector", 1.0)
    reference = getattr(detector, "reference_scores_", None)
    return ScoredAnswer(scores, top, errors, bytes(request.archive), detector.threshold,
                        getattr(detector, "threshold_perc_", None), reference)
