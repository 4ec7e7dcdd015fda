"""Tabular outliers in plain Python: the rows and features a run uses, its view, threshold maths and the export.

The page (``pages/tabular_outliers.py``) lays these out; the jobs (:mod:`jobs.tabular`) train and score. Flow::

    prepared, train_mask, n_eligible = prepare_training(table.frame, columns, label, missing, ...)
    request = jobs.tabular.FitRequest(X=prepared.X, train_mask=train_mask, ...)
    ... the job runs ...
    run = build_run(answer, RunContext(prepared, table_name, train_mask))
    threshold = run.threshold_for(percentile)
    csv_frame = scores_export(table.frame, run, threshold)       # one row per input row, joinable on ``row``

Features: numeric columns go to the detector as they are (it standardises them); text (categorical) columns are
one-hot encoded by an :class:`engine.preprocessing.OneHotEncoder` fitted on the training rows. The columns and
the encoder travel in the detector's archive (``preprocessing_``), so a saved detector re-applies them.

Threshold: a percentile of the *training* score distribution (``ThresholdMixin.percentile_threshold``). A saved
detector carries its threshold, the percentile and that distribution (``threshold_perc_``, ``reference_scores_``),
so scoring a new file keeps the threshold and shows where the new scores fall against the training ones.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.base import ThresholdMixin
from engine.errors import DataError
from engine.export import join_results
from engine.ingest import feature_matrix
from engine.metrics import ScoreCurves, binary_labels, score_curves
from engine.preprocessing import OneHotEncoder

EXPLAINED_ROWS = 500  # rows whose per-feature errors the job computes ("Why is this row unusual?")
DEFAULT_PERCENTILE = 95.0
MAX_CATEGORIES = 30  # one-hot columns per text column (the rest share "(other)")
REFERENCE_POINTS = 101  # quantiles of the training scores kept in a detector's archive
SLIDER_RANGE = (50.0, 99.9)


# ---------------------------------------------------------------------------------------------- features


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def split_columns(frame: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """The chosen ``columns`` split into numeric ones and text (categorical) ones, each in the chosen order."""
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise DataError(f"column(s) {unknown[:5]} are not in the data.")
    numeric = [c for c in columns if is_numeric(frame[c])]
    return numeric, [c for c in columns if c not in numeric]


@dataclass
class Prepared:
    """The rows and the model input of one run.

    ``rows`` are positions in the table (the row numbers the page and the export show); ``X`` holds the numeric
    columns, then the one-hot columns, of those rows.
    """

    X: np.ndarray
    rows: np.ndarray
    labels: np.ndarray | None
    frame: pd.DataFrame  # the kept rows' chosen columns (and label), indexed by row number
    numeric: list[str]
    categorical: list[str]
    feature_names: list[str]  # the detector's input columns (numeric names, then 'column=category')
    reasons: dict[int, str] = field(default_factory=dict)  # skipped row number -> why
    filled: dict[int, str] = field(default_factory=dict)  # row number -> which values were filled, and how
    unseen: np.ndarray | None = None  # per kept row: a text value outside the encoder's categories
    encoder: OneHotEncoder | None = None
    source: pd.DataFrame | None = None  # the whole table the rows come from (read only; the export joins to it)

    @property
    def preprocessing(self) -> dict:
        """How the table's columns become ``X``: stored in the detector's archive (``preprocessing_``)."""
        return {"numeric": list(self.numeric),
                "one_hot": None if self.encoder is None else self.encoder.get_config()}

    @property
    def n_unseen(self) -> int:
        return 0 if self.unseen is None else int(self.unseen.sum())


def _numeric_part(frame: pd.DataFrame, numeric: list[str], missing: str):
    """The numeric matrix, the kept rows, why others were skipped and which were filled."""
    if not numeric:
        if frame.empty:
            raise DataError("the data has no rows.")
        return np.zeros((len(frame), 0), np.float32), np.arange(len(frame)), {}, {}
    X, rows = feature_matrix(frame, numeric, missing=missing)
    values = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    notes = {int(r): ", ".join(c for c, b in zip(numeric, bad[r]) if b) for r in np.flatnonzero(bad.any(axis=1))}
    if missing == "drop":
        return X, rows, {r: f"missing or infinite value in {cols}" for r, cols in notes.items()}, {}
    if missing == "median":
        return X, rows, {}, {r: f"{cols} filled with the column median" for r, cols in notes.items()}
    return X, rows, {}, {}


def _prepared(frame, columns, label, missing, encoder=None, fit_rows=None) -> Prepared:
    if not columns:
        raise DataError("no feature columns are selected; pick at least one numeric or text column.")
    numeric, categorical = split_columns(frame, list(columns))
    X, rows, reasons, filled = _numeric_part(frame, numeric, missing)
    labels = None if label is None else binary_labels(frame[label].to_numpy()[rows])
    shown = list(columns) + ([label] if label and label not in columns else [])
    kept = frame.iloc[rows][shown].reset_index(drop=True).set_axis(rows, axis=0)
    prepared = Prepared(X, rows, labels, kept, numeric, categorical, list(numeric), reasons, filled, source=frame)
    if categorical and encoder is None and fit_rows is None:
        return prepared  # encoded once the training rows are known (encode)
    return encode(prepared, encoder, fit_rows)


def encode(prepared: Prepared, encoder: OneHotEncoder | None = None, fit_rows=None) -> Prepared:
    """``prepared`` with its text columns one-hot encoded: by ``encoder``, or by one fitted on ``fit_rows``.

    ``fit_rows`` are positions in ``prepared`` (a boolean mask or indices): the training rows.
    """
    if not prepared.categorical:
        return prepared
    text = prepared.frame[prepared.categorical]
    if encoder is None:
        fit_rows = np.asarray(fit_rows)
        encoder = OneHotEncoder(MAX_CATEGORIES).fit(text.iloc[np.flatnonzero(fit_rows) if fit_rows.dtype == bool
                                                              else fit_rows])
    onehot, unseen = encoder.transform(text.set_axis(range(len(text)), axis=0))
    numeric_width = len(prepared.numeric)
    prepared.X = np.hstack([prepared.X[:, :numeric_width], onehot]).astype(np.float32)
    prepared.feature_names = list(prepared.numeric) + encoder.feature_names_out()
    prepared.encoder, prepared.unseen = encoder, unseen
    return prepared


def training_mask(labels: np.ndarray | None, n_rows: int, *, normal_only: bool, max_rows: int,
                  seed: int) -> tuple[np.ndarray, int]:
    """The rows to train on (a random sample of at most ``max_rows``) and how many were eligible.

    Raises DataError when ``normal_only`` has no label column or fewer than 10 rows are eligible.
    """
    if normal_only and labels is None:
        raise DataError("training on normal rows only needs a label column; choose one or untick the box.")
    eligible = np.flatnonzero(labels == 0) if normal_only else np.arange(n_rows)
    if len(eligible) < 10:
        raise DataError(f"only {len(eligible)} rows are available for training; at least 10 are needed.")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=min(len(eligible), int(max_rows)), replace=False))
    mask = np.zeros(n_rows, dtype=bool)
    mask[chosen] = True
    return mask, len(eligible)


def prepare_training(frame: pd.DataFrame, columns: list[str], label: str | None, missing: str, *,
                     normal_only: bool, max_rows: int, seed: int) -> tuple[Prepared, np.ndarray, int]:
    """The run's rows and model input, the training mask over them, and how many rows were eligible.

    Text columns are one-hot encoded with categories learned from the training rows only.

    Examples
    --------
    >>> frame = pd.DataFrame({'x': np.arange(20.0), 'city': ['a', 'b'] * 10})
    >>> prepared, mask, n = prepare_training(frame, ['x', 'city'], None, 'drop', normal_only=False,
    ...                                      max_rows=100, seed=0)
    >>> prepared.feature_names, int(mask.sum())
    (['x', 'city=a', 'city=b', 'city=(other)'], 20)
    """
    prepared = _prepared(frame, columns, label, missing)
    mask, n_eligible = training_mask(prepared.labels, len(prepared.rows), normal_only=normal_only,
                                     max_rows=max_rows, seed=seed)
    return encode(prepared, fit_rows=mask), mask, n_eligible


def prepare_scoring(frame: pd.DataFrame, columns: list[str], label: str | None, missing: str,
                    detector: Any) -> Prepared:
    """The rows and model input for scoring with a saved ``detector``, re-applying its stored preprocessing.

    A detector saved with its preprocessing needs the same columns (any order: its own order is used) and
    re-applies its one-hot encoding (values it never saw go to ``(other)`` and are counted in ``n_unseen``). An
    older archive needs as many numeric columns as it has inputs, in its order.
    """
    preprocessing = getattr(detector, "preprocessing_", None)
    n_in = int(detector.n_features_in_)
    if not preprocessing:
        prepared = _prepared(frame, columns, label, missing)
        if prepared.categorical:
            raise DataError(f"the saved detector takes numeric columns only; {prepared.categorical[:5]} are text. "
                            "Choose the columns it was trained on.")
        if prepared.X.shape[1] != n_in:
            raise DataError(f"the saved detector was trained on {n_in} feature(s) and {prepared.X.shape[1]} are "
                            "selected; choose the columns it was trained on.")
        return prepared
    try:
        numeric = [str(c) for c in preprocessing.get("numeric") or []]
        encoder = None if not preprocessing.get("one_hot") else OneHotEncoder.from_config(preprocessing["one_hot"])
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"the saved detector's preprocessing is unreadable ({exc}).") from exc
    needed = numeric + ([] if encoder is None else list(encoder.columns_))
    if set(columns) != set(needed):
        raise DataError(f"the saved detector was trained on {len(needed)} feature(s) and {len(columns)} are "
                        f"selected; choose the columns it was trained on: {', '.join(needed)}.")
    numeric_now, _ = split_columns(frame, needed)
    if set(numeric_now) != set(numeric):
        raise DataError(f"the saved detector takes {', '.join(numeric) or 'no'} numeric column(s) and "
                        f"{', '.join(needed[len(numeric):]) or 'no'} text column(s); these columns have other types "
                        "here.")
    prepared = _prepared(frame, needed, label, missing, encoder=encoder)
    if prepared.X.shape[1] != n_in:
        raise DataError(f"the chosen columns give {prepared.X.shape[1]} inputs; the saved detector takes {n_in}.")
    return prepared


# ---------------------------------------------------------------------------------------------- threshold


def reference_quantiles(scores: np.ndarray, points: int = REFERENCE_POINTS) -> np.ndarray:
    """The training scores as kept in an archive: all of them (sorted) when few, else ``points`` quantiles.

    A percentile of the quantiles is the same percentile of the scores at the quantiles' levels, and a linear
    interpolation in between.

    Examples
    --------
    >>> reference_quantiles(np.arange(1001.0))[[0, 50, 100]].tolist()
    [0.0, 500.0, 1000.0]
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if len(scores) <= points:
        return scores
    return np.percentile(scores, np.linspace(0.0, 100.0, points))


def threshold_at(reference: np.ndarray, percentile: float) -> float:
    """The threshold at ``percentile`` of the reference scores (``ThresholdMixin.percentile_threshold``)."""
    return ThresholdMixin.percentile_threshold(reference, percentile)


def percentile_of(reference: np.ndarray, threshold: float) -> float:
    """The percentile of the reference scores that ``threshold`` corresponds to (the inverse of :func:`threshold_at`).

    Examples
    --------
    >>> percentile_of(np.arange(101.0), threshold_at(np.arange(101.0), 97.5))
    97.5
    """
    reference = np.sort(np.asarray(reference, dtype=np.float64))
    return float(np.interp(threshold, reference, np.linspace(0.0, 100.0, len(reference))))


def share_above(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(np.asarray(scores) > threshold)) if len(scores) else 0.0


# ---------------------------------------------------------------------------------------------- runs


class DetectorArchive:
    """A trained detector held as its archive bytes; the detector is built only when used (charts need only scores).

    Examples
    --------
    >>> held = DetectorArchive(answer.archive)                     # doctest: +SKIP
    >>> held.to_bytes(threshold=3.2, threshold_perc_=97.0)         # doctest: +SKIP
    """

    def __init__(self, archive: bytes) -> None:
        self.archive = bytes(archive)
        self._detector = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        from engine.saving import load_detector

        with self._lock:
            if self._detector is None:
                self._detector = load_detector(self.archive)
            return self._detector

    def to_bytes(self, **attributes: Any) -> bytes:
        """The archive, with ``attributes`` (e.g. the chosen ``threshold``) set on the detector first; as is without."""
        from engine.saving import detector_to_bytes

        if not attributes:
            return self.archive
        detector = self.load()
        with self._lock:
            for name, value in attributes.items():
                setattr(detector, name, value)
            return detector_to_bytes(detector)


@dataclass
class RunContext:
    """What the page keeps beside a job (never sent to it): the prepared rows and, for a training, its rows."""

    prepared: Prepared
    table_name: str
    train_mask: np.ndarray | None = None  # None: scored with a saved detector


@dataclass
class AEGMMRun:
    """What one job produced, as the page shows it; the slider and the charts only read it."""

    model: DetectorArchive
    prepared: Prepared
    scores: np.ndarray  # instance scores of the prepared rows
    reference: np.ndarray  # sorted scores the percentile refers to (the training scores, or their quantiles)
    curves: ScoreCurves | None
    table_name: str
    explained: dict[int, np.ndarray]  # row position -> per-feature error, for the highest-scoring rows
    from_archive: bool = False
    reference_is_training: bool = True  # False: an old archive without its training scores (the new file's)
    saved_threshold: float | None = None  # the threshold the saved detector carried
    saved_percentile: float | None = None
    threshold: float | None = None  # the slider's last threshold; the detector download carries it
    percentile: float | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # a new run: the slider starts again

    @property
    def columns(self) -> list[str]:
        return self.prepared.feature_names

    @property
    def X(self) -> np.ndarray:
        return self.prepared.X

    @property
    def labels(self) -> np.ndarray | None:
        return self.prepared.labels

    @property
    def frame(self) -> pd.DataFrame:
        return self.prepared.frame

    @property
    def train_scores(self) -> np.ndarray:
        return self.reference

    def start_percentile(self) -> float:
        """Where the slider starts: the saved detector's percentile (or its threshold's), else 95."""
        if self.saved_percentile is not None and self.reference_is_training:
            value = self.saved_percentile
        elif self.saved_threshold is not None:
            value = percentile_of(self.reference, self.saved_threshold)
        else:
            value = DEFAULT_PERCENTILE
        return round(float(np.clip(value, *SLIDER_RANGE)), 1)

    def threshold_for(self, percentile: float) -> float:
        """The threshold at ``percentile`` of the reference; exactly the saved threshold where the slider starts."""
        if self.saved_threshold is not None and abs(percentile - self.start_percentile()) < 1e-9:
            return float(self.saved_threshold)
        return threshold_at(self.reference, percentile)

    def feature_errors(self, position: int) -> np.ndarray:
        """Per-feature reconstruction error of the row at ``position`` (precomputed for the rows the page offers)."""
        if position not in self.explained:
            return self.model.load().feature_reconstruction_error(self.X[position:position + 1])[0]
        return self.explained[position]

    def flags(self, threshold: float) -> np.ndarray:
        return self.scores > threshold


def build_run(answer: Any, context: RunContext) -> AEGMMRun:
    """The page's view of a job's answer (:class:`jobs.tabular.ScoredAnswer`), built in the page's thread."""
    prepared, scores = context.prepared, np.asarray(answer.scores)
    curves = None if prepared.labels is None else score_curves(prepared.labels, scores)
    explained = dict(zip(np.asarray(answer.top).tolist(), answer.top_errors))
    if context.train_mask is not None:
        return AEGMMRun(DetectorArchive(answer.archive), prepared, scores, np.sort(scores[context.train_mask]),
                        curves, context.table_name, explained)
    reference = getattr(answer, "reference", None)
    return AEGMMRun(DetectorArchive(answer.archive), prepared, scores,
                    np.sort(scores) if reference is None else np.sort(np.asarray(reference)), curves,
                    f"{context.table_name} (saved detector)", explained, from_archive=True,
                    reference_is_training=reference is not None, saved_threshold=answer.threshold,
                    saved_percentile=answer.threshold_perc)


# ---------------------------------------------------------------------------------------------- exports


def scores_export(run: AEGMMRun, threshold: float) -> pd.DataFrame:
    """The scores CSV: one row per row of the run's table in its order, joinable on ``row`` (``engine.export.join_results``).

    Columns: ``row``, every column of the table, ``status`` (scored/skipped), ``reason`` (why a row was skipped),
    ``instance_score``, ``is_outlier`` (0/1, empty when skipped), then ``unseen_category`` (1 where a text value
    was outside the encoder's categories) when text features were used, and ``filled`` (which values were filled
    with the median) under that policy.
    """
    prepared = run.prepared
    results = pd.DataFrame({"instance_score": run.scores, "is_outlier": run.flags(threshold).astype(int)})
    if prepared.unseen is not None:
        results["unseen_category"] = prepared.unseen.astype(int)
    if prepared.filled:
        results["filled"] = [prepared.filled.get(int(r), "") for r in prepared.rows]
    out = join_results(prepared.source, prepared.rows, results, reasons=prepared.reasons)
    for column in ("is_outlier", "unseen_category"):
        if column in out:
            out[column] = out[column].astype("Int64")
    return out


def unseen_sentence(prepared: Prepared) -> str | None:
    """A sentence on rows whose text values the encoder did not know, or None when there are none."""
    if not prepared.n_unseen:
        return None
    return (f"{prepared.n_unseen:,} of {len(prepared.rows):,} rows have a text value outside the detector's "
            f"categories (new, or rarer than the {MAX_CATEGORIES} kept per column): it counts as "
            "'(other)'; the export marks these rows in `unseen_category`.")


def skipped_sentence(prepared: Prepared) -> str | None:
    """A sentence on the rows that were not scored, or None when every row was."""
    if not prepared.reasons:
        return None
    return (f"{len(prepared.reasons):,} of {len(prepared.source):,} rows were not scored (missing or infinite values in the "
            "chosen columns); the export keeps them with `status` skipped and the reason.")


def start_hint(table_name: str, origin: str, label: str | None) -> str:
    """What the page says before the first run, for the dataset chosen (``origin``: 'upload' or 'bundled:<key>')."""
    if origin == "bundled:shuttle":
        return ("Choose the columns and press **Train**. Bundled Shuttle works out of the box: its `anomaly` column "
                "is the label.")
    what = "your file" if origin == "upload" else "this dataset"
    label_part = (f" Its label column `{label}` gives precision, recall and ROC." if label else
                  " With a 0/1 label column (optional) the page also reports precision, recall and ROC.")
    return (f"Choose the feature columns of {what} **{table_name}** (numeric columns, and text columns, which are "
            f"one-hot encoded) and press **Train**.{label_part}")
