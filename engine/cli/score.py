"""``lantern score``: a detector archive applied to every row of a CSV / Parquet file, streamed.

Output: one row per input row, in input order, with

- ``row``: the row's 0-based position in the input (data rows, header not counted);
- any ``--keep`` columns copied from the input (an id to join on);
- ``instance_score`` (float) and ``is_outlier`` (0/1; for ``ModelDistillation`` its ``is_adversarial``);
- ``status``: ``ok``, or why the row was skipped (a missing or infinite feature value; its score and
  flag are then empty);
- with ``--feature-scores``, ``feature_score_<column>`` per feature column.

Row-wise detectors (``OutlierAEGMM``, ``ModelDistillation``) score each batch on its own. An
``OutlierSeq2Seq`` reads the file as one series, in order: rows are time steps, cut into consecutive
windows of ``seq_len`` steps exactly as :meth:`OutlierSeq2Seq.score` cuts a whole series (a ragged end
is scored with the last ``seq_len`` steps), so streaming gives the same numbers as scoring it at once.
A step's feature scores come from its window; its instance score is their mean (``outlier_perc`` 100)
and ``is_outlier`` is ``instance_score > 0``, as ``predict(..., outlier_type='instance')``. A series
cannot skip steps, so a missing value there is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.cli import io
from engine.cli.io import UsageError
from engine.errors import DataError

DEFAULT_BATCH_SIZE = 65_536
ROW_WISE = ("OutlierAEGMM", "ModelDistillation")


@dataclass
class ScorePlan:
    """What to read and what to write; plain data, so it travels to Ray workers."""

    detector_class: str
    features: list[str]
    keep: list[str] = field(default_factory=list)
    feature_scores: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    instance_shape: tuple = ()
    seq_len: int = 0

    @property
    def columns(self) -> list[str]:
        return self.features + [c for c in self.keep if c not in self.features]

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        fields = [pa.field("row", pa.int64())]
        fields += [input_schema.field(c) for c in self.keep]
        fields += [pa.field("instance_score", pa.float64()), pa.field("is_outlier", pa.int8()),
                   pa.field("status", pa.string())]
        if self.feature_scores:
            fields += [pa.field(f"feature_score_{c}", pa.float64()) for c in self.features]
        return pa.schema(fields)


def detector_input(detector: Any) -> tuple[int, tuple]:
    """Number of feature columns the detector takes and the shape of one instance."""
    name = type(detector).__name__
    if name == "OutlierAEGMM":
        n = int(detector.n_features_in_)
        return n, (n,)
    if name == "OutlierSeq2Seq":
        n = int(detector.n_features)
        return n, (n,)
    if name == "ModelDistillation":
        from engine.ad.model_distillation import _model_input_shape

        shape = _model_input_shape(detector.model)
        if not shape or any(d is None for d in shape):
            raise UsageError("this ModelDistillation archive does not say its classifier's input shape.")
        return int(np.prod(shape)), tuple(int(d) for d in shape)
    raise UsageError(f"the archive holds a {name}, which `lantern score` does not score; "
                     "use an OutlierAEGMM, OutlierSeq2Seq or ModelDistillation archive.")


def plan_score(detector: Any, input_path, input_schema: pa.Schema, *, columns: list[str] | None = None,
               keep: list[str] | None = None, feature_scores: bool = False,
               batch_size: int = DEFAULT_BATCH_SIZE) -> ScorePlan:
    """Check the detector against the input's columns and decide what to read; :class:`UsageError` if they do not fit."""
    name = type(detector).__name__
    width, shape = detector_input(detector)
    if getattr(detector, "threshold", None) is None:
        raise UsageError(f"the {name} archive has no threshold; set one in the app (or infer_threshold) "
                         "before exporting it.")
    if feature_scores and name == "ModelDistillation":
        raise UsageError("--feature-scores: a ModelDistillation detector has no feature-level scores.")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}.")
    available = input_schema.names
    named = columns or getattr(detector, "feature_names_", None)
    if named:
        missing = [c for c in named if c not in available]
        if missing:
            raise UsageError(f"input {input_path} has no column {missing[0]!r} (the detector reads "
                             f"{_listing(named)}); its columns are {_listing(available)}.")
        if len(named) != width:
            raise UsageError(f"--columns names {len(named)} columns but the {name} was trained on {width}.")
        features = list(named)
    else:
        features = [f.name for f in input_schema if _numeric_or_unknown(f.type)]
        if len(features) != width:
            raise UsageError(
                f"the {name} was trained on {width} columns and its archive does not name them; input {input_path} "
                f"has {len(features)} numeric columns ({_listing(features)}). Name them with --columns a,b,c.")
    for column in features:
        kind = input_schema.field(column).type
        if not _numeric_or_unknown(kind):
            raise UsageError(f"input {input_path}: column {column!r} is not numeric ({kind}); the detector "
                             "needs numbers in every feature column.")
    keep = list(keep or [])
    for column in keep:
        if column not in available:
            raise UsageError(f"--keep: input {input_path} has no column {column!r}.")
        if column in ("row", "instance_score", "is_outlier", "status") or column.startswith("feature_score_"):
            raise UsageError(f"--keep: column {column!r} would clash with an output column; rename it.")
    return ScorePlan(name, features, keep, feature_scores, int(batch_size), shape,
                     int(getattr(detector, "seq_len", 0) or 0))


def _numeric_or_unknown(kind: pa.DataType) -> bool:
    # An all-empty CSV column is inferred as null: it is read as float64 (missing values), not refused.
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
        or pa.types.is_decimal(kind) or pa.types.is_null(kind)


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "") if names else "(none)"


def feature_matrix(table: pa.Table, plan: ScorePlan) -> np.ndarray:
    """The feature columns as float32 (N, F); nulls are NaN. Text in a column is a :class:`DataError` naming it."""
    out = np.empty((table.num_rows, len(plan.features)), dtype=np.float32)
    for j, name in enumerate(plan.features):
        column = table.column(name)
        if not pa.types.is_floating(column.type):
            try:
                column = pc.cast(column, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"column {name!r} holds values that are not numbers ({column.type}).") from exc
        with np.errstate(over="ignore"):
            out[:, j] = column.to_numpy(zero_copy_only=False)
    return out


def _skip_reasons(X: np.ndarray, plan: ScorePlan) -> tuple[np.ndarray, np.ndarray]:
    """Rows with every feature finite, and each row's status text."""
    finite = np.isfinite(X)
    ok = finite.all(axis=1)
    status = np.full(len(X), "ok", dtype=object)
    for i in np.flatnonzero(~ok):
        j = int(np.argmin(finite[i]))
        what = "missing" if np.isnan(X[i, j]) else "infinite or too large"
        status[i] = f"skipped: {what} value in {plan.features[j]!r}"
    return ok, status


def _assemble(table: pa.Table, plan: ScorePlan, score: np.ndarray, flag: np.ndarray, valid: np.ndarray,
              status: np.ndarray, fscore: np.ndarray | None) -> pa.Table:
    invalid = ~valid
    columns = {c: table.column(c) for c in plan.keep}
    columns["instance_score"] = pa.array(score, type=pa.float64(), mask=invalid)
    columns["is_outlier"] = pa.array(flag.astype(np.int8), type=pa.int8(), mask=invalid)
    columns["status"] = pa.array(status, type=pa.string())
    if plan.feature_scores:
        for j, name in enumerate(plan.features):
            columns[f"feature_score_{name}"] = pa.array(fscore[:, j], type=pa.float64(), mask=invalid)
    return pa.table(columns)


def score_rows(detector: Any, table: pa.Table, plan: ScorePlan) -> pa.Table:
    """Score a batch with a row-wise detector; the output columns of :meth:`ScorePlan.output_schema` but ``row``."""
    X = feature_matrix(table, plan)
    ok, status = _skip_reasons(X, plan)
    n = len(X)
    score = np.zeros(n, dtype=np.float64)
    flag = np.zeros(n, dtype=np.int8)
    fscore = np.zeros((n, len(plan.features)), dtype=np.float64) if plan.feature_scores else None
    if ok.any():
        rows = X[ok].reshape((-1,) + tuple(plan.instance_shape))
        payload = detector.predict(rows, batch_size=plan.batch_size)["data"]
        score[ok] = payload["instance_score"]
        flag[ok] = payload["is_outlier"] if "is_outlier" in payload else payload["is_adversarial"]
        if fscore is not None:
            fscore[ok] = detector.feature_reconstruction_error(rows, batch_size=plan.batch_size)
    return _assemble(table, plan, score, flag, ok, status, fscore)


class SeriesScorer:
    """Streams one time series through an ``OutlierSeq2Seq`` in whole windows (see the module docstring)."""

    def __init__(self, detector: Any, plan: ScorePlan) -> None:
        self.detector = detector
        self.plan = plan
        self.seq_len = plan.seq_len
        self._rows = np.empty((0, len(plan.features)), dtype=np.float32)
        self._kept = None
        self._context = np.empty((0, len(plan.features)), dtype=np.float32)
        self._seen = 0

    def feed(self, table: pa.Table) -> pa.Table | None:
        X = feature_matrix(table, self.plan)
        bad = ~np.isfinite(X)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise DataError(f"row {self._seen + int(i)}: column {self.plan.features[j]!r} has a missing or infinite "
                            "value; a time series cannot skip steps, so fill or drop it before scoring.")
        self._seen += len(X)
        self._rows = np.concatenate([self._rows, X])
        kept = table.select(self.plan.keep)
        self._kept = kept if self._kept is None else pa.concat_tables([self._kept, kept])
        n_whole = (len(self._rows) // self.seq_len) * self.seq_len
        if n_whole == 0:
            return None
        return self._emit(n_whole)

    def _emit(self, n: int) -> pa.Table:
        rows, self._rows = self._rows[:n], self._rows[n:]
        kept, self._kept = self._kept.slice(0, n), self._kept.slice(n)
        self._context = rows[-self.seq_len:]
        fscore, iscore = self.detector.score(rows, batch_size=self.plan.batch_size)
        return self._table(kept, fscore, iscore)

    def finish(self) -> pa.Table | None:
        """Score the ragged end (fewer than ``seq_len`` steps) with the last ``seq_len`` steps of the series."""
        rest = len(self._rows)
        if rest == 0:
            return None
        if self._seen < self.seq_len:
            raise DataError(f"the series has {self._seen} rows, fewer than the detector's window of "
                            f"{self.seq_len} steps (seq_len).")
        window = np.concatenate([self._context[len(self._context) - (self.seq_len - rest):], self._rows])
        fscore, iscore = self.detector.score(window, batch_size=self.plan.batch_size)
        kept = self._kept
        self._rows, self._kept = self._rows[:0], self._kept.slice(rest)
        return self._table(kept, fscore[-rest:], iscore[-rest:])

    def _table(self, kept: pa.Table, fscore: np.ndarray, iscore: np.ndarray) -> pa.Table:
        n = len(iscore)
        valid = np.ones(n, dtype=bool)
        status = np.full(n, "ok", dtype=object)
        return _assemble(kept, self.plan, np.asarray(iscore, np.float64), np.asarray(iscore) > 0, valid, status,
                         np.asarray(fscore, np.float64) if self.plan.feature_scores else None)


@dataclass
class Summary:
    rows: int = 0
    flagged: int = 0
    skipped: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    first_batch_s: float | None = None  # start-up: until the first scored batch came back (Ray: actors built)

    def add(self, table: pa.Table) -> None:
        if self.first_batch_s is None:
            self.first_batch_s = time.perf_counter() - self.started
        self.rows += table.num_rows
        self.flagged += int(pc.sum(table.column("is_outlier")).as_py() or 0)
        self.skipped += int(table.column("is_outlier").null_count)

    def line(self, output) -> str:
        self.seconds = time.perf_counter() - self.started
        rate = self.rows / self.seconds if self.seconds > 0 else float("nan")
        skipped = f", {self.skipped:,} skipped (see status)" if self.skipped else ""
        first = f"; first batch after {self.first_batch_s:.1f} s" if self.first_batch_s is not None else ""
        return (f"lantern score: {self.rows:,} rows, {self.flagged:,} flagged{skipped}, "
                f"{self.seconds:.1f} s ({rate:,.0f} rows/s{first}) -> {output}")


def with_row_numbers(table: pa.Table, first: int) -> pa.Table:
    rows = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64))
    return table.add_column(0, "row", rows)


def score_in_process(detector: Any, plan: ScorePlan, input_path, writer: io.TableWriter, progress) -> Summary:
    """Stream the input through ``detector`` in this process, writing each scored batch as it comes."""
    summary = Summary()
    series = SeriesScorer(detector, plan) if plan.detector_class == "OutlierSeq2Seq" else None
    batches = io.read_batches(input_path, plan.columns, plan.features, plan.batch_size)
    for table in batches:
        out = series.feed(table) if series is not None else score_rows(detector, table, plan)
        if out is not None:
            writer.write(with_row_numbers(out, summary.rows))
            summary.add(out)
        progress.update(table.num_rows)
    if series is not None and (out := series.finish()) is not None:
        writer.write(with_row_numbers(out, summary.rows))
        summary.add(out)
    return summary
