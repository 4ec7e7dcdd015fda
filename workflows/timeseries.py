"""The time-series outliers workflow without streamlit: preparing a series, the run the page shows, thresholds, exports.

The page (``pages/timeseries_outliers.py``) lays these out; the heavy part (training and scoring an
OutlierSeq2Seq) is :mod:`jobs.timeseries`. Scores and flags always come from the engine's own rule
(:func:`engine.od.seq2seq.threshold_scores`), so what the page flags is what ``predict`` would flag.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.base import percentile_threshold
from engine.errors import DataError
from engine.export import join_results
from engine.ingest import feature_matrix
from engine.metrics import ScoreCurves, binary_labels, score_curves
from engine.od.seq2seq import threshold_scores

DEFAULT_DATASET = "bundled:ecg_synth"
ROW_ORDER = "(row order)"
MAX_FEATURES = 32
MAX_SEQ_LEN = 1_000
MAX_LATENT = 256
DEFAULT_PERCENTILE = 99.0
OVERLAPS = {0.0: "none", 0.5: "50 %", 0.75: "75 %", 0.875: "87.5 %"}


@dataclass(frozen=True)
class Defaults:
    """The page's default settings, chosen with ``bench/timeseries_demo.py`` on the default series.

    The default series is the bundled synthetic ECG (``ecg_synth``: a clean 10,000-sample stretch, then one with
    three labelled anomalies), with a beat every 20 samples: windows of five beats, trained on the first half,
    put the labelled anomalies at the top of the window ranking.
    """

    seq_len: int = 100
    latent_dim: int = 64
    overlap: float = 0.875
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    train_share: int = 50
    outlier_perc: int = 10
    percentile: float = DEFAULT_PERCENTILE


DEFAULTS = Defaults()


def stride_for(seq_len: int, overlap: float) -> int:
    """Steps between training windows for a window length and an overlap share.

    Examples
    --------
    >>> stride_for(100, 0.875), stride_for(100, 0.0), stride_for(5, 0.875)
    (12, 100, 1)
    """
    return max(1, int(round(int(seq_len) * (1 - float(overlap)))))


def time_axis(frame: pd.DataFrame, column: str | None, rows: np.ndarray) -> np.ndarray:
    """The time column's values at ``rows`` (numbers or dates), or the row numbers; DataError if unusable.

    Examples
    --------
    >>> time_axis(pd.DataFrame({'t': [3, 1, 2]}), 't', np.array([0, 2])).tolist()
    [3, 2]
    >>> time_axis(pd.DataFrame({'t': [3, 1, 2]}), None, np.array([0, 2])).tolist()
    [0, 2]
    """
    if column is None:
        return np.asarray(rows).copy()
    values = frame[column].iloc[rows]
    if values.isna().any():
        raise DataError(f"the time column {column!r} has {int(values.isna().sum())} missing value(s) in the rows "
                        f"used; clean it or choose {ROW_ORDER}.")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy()
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if parsed.isna().any():
        example = values[parsed.isna()].iloc[0]
        raise DataError(f"the time column {column!r} holds values that are neither numbers nor dates (e.g. "
                        f"{str(example)[:40]!r}); choose another column or {ROW_ORDER}.")
    return parsed.to_numpy()


@dataclass
class Prepared:
    """A series ready for a job: the feature matrix in time order and where each step came from."""

    X: np.ndarray  # (n_steps, n_features), time order
    rows: np.ndarray  # position in the source table of each step
    time: np.ndarray  # x axis of every chart: the time column's values or the row numbers
    time_name: str  # the time column, or 'row'
    labels: np.ndarray | None  # per step, 0/1
    n_train: int  # steps [0, n_train) train the model (or are the thresholds' reference)
    features: list[str]
    notes: list[str] = field(default_factory=list)  # what was changed on the way, for the page to say
    reasons: dict[int, str] = field(default_factory=dict)  # source positions left out, and why
    imputed: dict[int, str] = field(default_factory=dict)  # source positions filled in, and which columns


def _missing_cells(frame: pd.DataFrame, features: list[str]) -> dict[int, list[str]]:
    """Source positions with a missing or infinite value in ``features``, and those columns."""
    values = frame[features].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    return {int(i): [features[j] for j in np.flatnonzero(bad[i])] for i in np.flatnonzero(bad.any(axis=1))}


def model_features(features: list[str], time_name: str | None, label: str | None) -> tuple[list[str], str]:
    """The chosen features without the time and label columns, and a note saying which were left out ('' if none).

    Examples
    --------
    >>> model_features(['ecg', 'time', 'label'], 'time', 'label')[0]
    ['ecg']
    """
    dropped = [c for c in features if c in (time_name, label)]
    kept = [c for c in features if c not in (time_name, label)]
    note = (f"{', '.join(f'`{c}`' for c in dropped)} left out of the features: the time and label columns are "
            "never fed to the model.") if dropped else ""
    return kept, note


def prepare(frame: pd.DataFrame, features: list[str], *, time_name: str | None, label: str | None,
            missing: str, train_share: float, window: int, max_train_rows: int | None = None,
            training: bool = True) -> Prepared:
    """The series of ``features`` in time order, its labels and the training stretch; DataError when unusable.

    ``features`` come from :func:`model_features` (never the time or label column). ``window`` is the
    window length; the training (or reference) stretch must hold at least two windows.

    Examples
    --------
    >>> frame = pd.DataFrame({'t': [2, 1, 3, 4, 5, 6], 'x': [2.0, 1.0, 3.0, 4.0, 5.0, 6.0]})
    >>> p = prepare(frame, ['x'], time_name='t', label=None, missing='error', train_share=100, window=3)
    >>> p.rows.tolist(), p.X[:, 0].tolist()[:2], p.n_train
    ([1, 0, 2, 3, 4, 5], [1.0, 2.0], 6)
    """
    notes: list[str] = []
    if len(features) > MAX_FEATURES:
        raise DataError(f"{len(features)} feature columns are selected; at most {MAX_FEATURES} are allowed. "
                        "Leave some out.")
    X, rows = feature_matrix(frame, features, missing=missing)
    cells = _missing_cells(frame, features)
    reasons = {i: "missing or infinite value in " + ", ".join(c) for i, c in cells.items()} if missing == "drop" else {}
    imputed = {i: "median of " + ", ".join(c) for i, c in cells.items()} if missing == "median" else {}
    time_values = time_axis(frame, time_name, rows)
    labels = None if label is None else binary_labels(frame[label].to_numpy()[rows])
    order = np.argsort(time_values, kind="stable")
    if np.any(order != np.arange(len(order))):
        X, rows, time_values = X[order], rows[order], time_values[order]
        labels = None if labels is None else labels[order]
        notes.append(f"The rows were not in time order; they are sorted by `{time_name}`.")
    n_train = int(round(len(X) * float(train_share) / 100))
    if training and max_train_rows is not None and n_train > max_train_rows:
        notes.append(f"Training on the first {max_train_rows:,} steps (this server's limit); all {len(X):,} steps "
                     "are scored.")
        n_train = int(max_train_rows)
    if n_train < 2 * window:
        raise DataError(f"the {'training' if training else 'reference'} stretch has {n_train:,} steps, fewer than "
                        f"two windows of {window} steps; " + ("lower the window length or " if training else "")
                        + "use a larger share of the series.")
    return Prepared(X, rows, time_values, time_name or "row", labels, n_train, list(features), notes, reasons,
                    imputed)


def window_labels(labels: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """1 for each window (first steps ``starts``, ``seq_len`` long) holding at least one labelled step.

    Examples
    --------
    >>> window_labels(np.array([0, 0, 0, 1, 0, 0]), np.array([0, 2, 4]), 2).tolist()
    [0, 1, 0]
    """
    before = np.concatenate([[0], np.cumsum(np.asarray(labels, dtype=np.int64))])
    starts = np.asarray(starts, dtype=np.int64)
    return (before[starts + int(seq_len)] - before[starts] > 0).astype(int)


@dataclass
class RunContext:
    """What the page keeps next to a job (never sent to it): the prepared series and where it came from."""

    prepared: Prepared
    source: pd.DataFrame  # the table as the user gave it, for exports that join back
    table_name: str
    from_archive: bool = False


@dataclass
class Seq2SeqRun:
    """The page's view of one job's answer: the detector and every score the result controls re-threshold."""

    archive: bytes  # the trained (or loaded) detector
    run_id: str  # new for every answer: the per-feature thresholds start over for it
    prepared: Prepared
    source: pd.DataFrame
    reconstruction: np.ndarray  # per step, original units
    raw: np.ndarray  # per step and feature: squared error − learned estimate (before the threshold)
    window_start: np.ndarray  # first step of every scored window
    window_raw: np.ndarray  # (n_windows, seq_len, n_features): the raw scores as each window saw them
    window_reconstruction: np.ndarray  # (n_windows, seq_len, n_features), original units
    window_labels: np.ndarray | None  # 1 when any step of the window is labelled
    step_curves: ScoreCurves | None  # threshold-free ROC / PR of the per-step score against the labels
    table_name: str
    from_archive: bool = False  # scored with a loaded detector: n_train steps are only the thresholds' reference
    loss: list[float] = field(default_factory=list)  # training loss per epoch
    epochs: int = 0  # epochs asked for
    threshold: np.ndarray | None = None  # the controls' per-feature thresholds on the last rerun; the archive's

    # The prepared series, under the names the charts use.
    X = property(lambda self: self.prepared.X)
    time = property(lambda self: self.prepared.time)
    time_name = property(lambda self: self.prepared.time_name)
    labels = property(lambda self: self.prepared.labels)
    n_train = property(lambda self: self.prepared.n_train)
    features = property(lambda self: self.prepared.features)

    @property
    def seq_len(self) -> int:
        return self.window_raw.shape[1]

    def archive_with(self, threshold: np.ndarray) -> bytes:
        """The detector's archive carrying ``threshold`` and the feature names."""
        from engine.saving import detector_to_bytes, load_detector

        detector = load_detector(self.archive)
        detector.threshold = np.asarray(threshold, dtype=np.float32)
        detector.feature_names_ = [str(c) for c in self.features]
        return detector_to_bytes(detector)


def build_run(answer, context: RunContext) -> Seq2SeqRun:
    """The page's view of a :class:`jobs.timeseries.Answer` (built in the page's thread)."""
    prepared = context.prepared
    labels = prepared.labels
    starts = np.asarray(answer.window_start)
    window_labels_, curves = None, None
    if labels is not None:
        window_labels_ = window_labels(labels, starts, answer.seq_len)
        curves = score_curves(labels, threshold_scores(answer.raw, 0.0, 100.0)["instance_score"])
    return Seq2SeqRun(answer.archive, uuid.uuid4().hex, prepared, context.source, answer.reconstruction,
                      answer.raw, starts, answer.window_raw, answer.window_reconstruction, window_labels_, curves,
                      context.table_name, context.from_archive, list(answer.loss), int(answer.epochs))


def feature_threshold(run: Seq2SeqRun, feature: int, percentile: float) -> float:
    """Feature ``feature``'s threshold: the ``percentile`` percentile of its raw scores on the training stretch."""
    return percentile_threshold(run.raw[:run.n_train, feature], percentile, dtype=None)


def flagged_count(run: Seq2SeqRun, feature: int, threshold: float) -> int:
    """Steps of the whole series whose feature ``feature`` is above ``threshold``."""
    return int(np.sum(run.raw[:, feature] > threshold))


def thresholds_at(run: Seq2SeqRun, percentiles) -> np.ndarray:
    """Per-feature thresholds: each feature's ``percentiles[f]`` percentile of its training-stretch raw scores.

    Examples
    --------
    >>> prepared = Prepared(np.zeros((4, 1)), np.arange(4), np.arange(4), 'row', None, 4, ['x'])
    >>> run = Seq2SeqRun(b'', '', prepared, None, None, np.arange(4.0)[:, None], None, None, None, None, None, '')
    >>> thresholds_at(run, [50.0]).tolist()
    [1.5]
    """
    percentiles = np.broadcast_to(np.asarray(percentiles, dtype=np.float64), (run.raw.shape[1],))
    return np.array([feature_threshold(run, f, p) for f, p in enumerate(percentiles)], dtype=np.float32)


@dataclass
class Scored:
    """Feature scores and flags of every step and window at one set of thresholds and one ``outlier_perc``."""

    threshold: np.ndarray
    outlier_perc: float
    feature_scores: np.ndarray  # (n_steps, n_features), > 0 flagged
    flags: np.ndarray  # (n_steps, n_features)
    step_scores: np.ndarray  # (n_steps,): instance score of each step
    window_feature_scores: np.ndarray  # (n_windows, seq_len, n_features)
    window_scores: np.ndarray  # (n_windows,)
    window_flags: np.ndarray  # (n_windows,)

    @property
    def step_flags(self) -> np.ndarray:
        """A step is flagged when any of its features is."""
        return self.flags.any(axis=1)


def apply_thresholds(run: Seq2SeqRun, threshold: np.ndarray, outlier_perc: float) -> Scored:
    """Re-threshold the cached scores with the detector's rule (no model call)."""
    steps = threshold_scores(run.raw, threshold, outlier_perc)
    windows = threshold_scores(run.window_raw, threshold, outlier_perc)
    return Scored(np.asarray(threshold, dtype=np.float32), float(outlier_perc), steps["feature_score"],
                  steps["feature_outlier"], steps["instance_score"], windows["feature_score"],
                  windows["instance_score"], windows["instance_outlier"])


def window_of_step(n_steps: int, seq_len: int, n_windows: int) -> np.ndarray:
    """The scored window each step's score comes from (consecutive windows, the last aligned to the end).

    Examples
    --------
    >>> window_of_step(7, 3, 3).tolist()
    [0, 0, 0, 1, 1, 1, 2]
    """
    return np.minimum(np.arange(n_steps) // int(seq_len), n_windows - 1)


def windows_table(run: Seq2SeqRun, scored: Scored) -> pd.DataFrame:
    """One row per window, highest instance score first."""
    starts = run.window_start
    frame = pd.DataFrame({
        "window": np.arange(len(starts)),
        "start_time": run.time[starts],
        "end_time": run.time[starts + run.seq_len - 1],
        "instance_score": scored.window_scores,
        "is_outlier": scored.window_flags,
        "flagged_steps": np.any(scored.window_feature_scores > 0, axis=2).sum(axis=1),
    })
    if len(run.features) > 1:
        top = np.argmax(scored.window_feature_scores.max(axis=1), axis=1)
        frame["top_feature"] = np.asarray(run.features, dtype=object)[top]
    if run.window_labels is not None:
        frame["labelled"] = run.window_labels.astype(bool)
    return frame.sort_values("instance_score", ascending=False, kind="stable")


def step_export(run: Seq2SeqRun, scored: Scored) -> pd.DataFrame:
    """One row per input row, in input order: ``row``, the original columns, ``status``/``reason``, then scores.

    Per feature ``f``: ``f_reconstruction``, ``f_score`` (above 0: above its threshold) and ``f_flagged``;
    then ``instance_score`` (mean of the step's top ``outlier_perc`` % feature scores), ``is_outlier`` (any
    feature flagged, as the page counts steps), ``step`` (position in time order), ``window`` (the scored
    window the step's score comes from), ``window_score`` and ``window_is_outlier``. Rows left out (a
    missing value with the 'drop' policy) say why in ``reason``; rows filled in say so in ``imputed``.
    """
    prepared = run.prepared
    n_steps = len(prepared.X)
    window = window_of_step(n_steps, run.seq_len, len(run.window_start))
    columns: dict[str, np.ndarray] = {"step": np.arange(n_steps)}
    for f, name in enumerate(run.features):
        columns[f"{name}_reconstruction"] = run.reconstruction[:, f]
        columns[f"{name}_score"] = scored.feature_scores[:, f]
        columns[f"{name}_flagged"] = scored.flags[:, f]
    columns.update({"instance_score": scored.step_scores, "is_outlier": scored.step_flags, "window": window,
                    "window_score": scored.window_scores[window], "window_is_outlier": scored.window_flags[window]})
    if prepared.imputed:
        columns["imputed"] = np.array([prepared.imputed.get(int(r), "") for r in prepared.rows], dtype=object)
    return join_results(run.source, prepared.rows, pd.DataFrame(columns), reasons=prepared.reasons,
                        default_reason="not scored")


def window_export(run: Seq2SeqRun, scored: Scored) -> pd.DataFrame:
    """One row per scored window, in time order (the ranked table's columns)."""
    return windows_table(run, scored).sort_values("window")


def window_ranking(window_scores: np.ndarray, window_labels_: np.ndarray) -> tuple[float, int]:
    """Window ROC-AUC of the scores against the labels, and the rank (1 = top) of the best-ranked labelled window.

    Examples
    --------
    >>> window_ranking(np.array([0.1, 0.9, 0.3]), np.array([0, 1, 0]))
    (1.0, 1)
    """
    labels = np.asarray(window_labels_).astype(bool)
    order = np.argsort(-np.asarray(window_scores), kind="stable")
    rank = int(np.flatnonzero(labels[order])[0]) + 1 if labels.any() else 0
    return float(score_curves(labels.astype(int), window_scores).roc_auc), rank
