"""``lantern explain anchors|cem``: one explanation per row of a file, as JSON lines, in input order.

The classifier comes from a model file through :func:`engine.predictors.load_predictor` with
``trusted=True``: the command runs as the user, on the user's own files (so Keras ``.keras`` and
scikit-learn ``.skops`` models load, not only ONNX). The explainer (``AnchorTabular`` or ``CEM``)
is fitted on the ``--train`` rows (at most :data:`MAX_TRAIN_ROWS`, the first ones), then every
``--input`` row is explained on its own:

- anchors: ``explain(x, threshold=...)`` with the explainer's seed; each row's search draws from
  its own generator seeded with ``--seed``, so a row's anchor does not depend on the rows before it
  (and is the same in the process and on any Ray worker);
- cem: ``explain(x[None])`` with the mode (``PN`` / ``PP``), the feature range of the training
  rows and ``no_info_type='median'``; white-box (the Keras network) when the model file has one.

On Ray every worker fits its own explainer on the same rows, so the explanations are the same as in
the process, but for AnchorTabular's work counter ``raw.search.n_predicted_rows``: an explainer
predicts its training rows once, and counts them in the first row it explains.

Output lines: ``{"row": i, "explanation": <Explanation.to_json() as JSON>}``, or
``{"row": i, "error": "..."}`` for a row that cannot be explained (a missing value, or an
explanation that failed).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.cli import io
from engine.cli.io import UsageError

MAX_TRAIN_ROWS = 100_000


@dataclass
class ExplainSpec:
    """What every worker needs to build the same explainer; plain data."""

    method: str
    features: list[str]
    threshold: float = 0.95
    mode: str = "PN"
    seed: int = 0


def load_model(source: str | Path | bytes, kind: str | None = None) -> Any:
    """The classifier in ``source`` as a probability function (trusted: the user's own file)."""
    from engine.predictors import load_predictor

    return load_predictor(source, kind=kind, trusted=True)


def _model_width(predictor: Any) -> int | None:
    width = getattr(predictor, "n_features", None)
    return int(width) if width else None


def build_explainer(spec: ExplainSpec, predictor: Any, X_train: np.ndarray) -> Any:
    if spec.method == "anchors":
        from engine.explainers import AnchorTabular

        return AnchorTabular(predictor, spec.features, seed=spec.seed).fit(X_train)
    from engine.explainers import CEM

    white_box = getattr(predictor, "keras_model", None) if getattr(predictor, "white_box", False) else None
    cem = CEM(white_box if white_box is not None else predictor, mode=spec.mode, shape=(1, len(spec.features)),
              feature_range=(X_train.min(axis=0), X_train.max(axis=0)))
    return cem.fit(X_train, no_info_type="median")


def explain_rows(explainer: Any, spec: ExplainSpec, X: np.ndarray, first_row: int) -> list[dict]:
    """One record (a line of the output) per row of ``X``, rows numbered from ``first_row``."""
    lines = []
    for offset, x in enumerate(X):
        row = first_row + offset
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            lines.append({"row": row, "error": f"missing or infinite value in {spec.features[bad[0]]!r}"})
            continue
        try:
            if spec.method == "anchors":
                explanation = explainer.explain(x, threshold=spec.threshold)
            else:
                explanation = explainer.explain(x[None, :])
        except Exception as exc:  # noqa: BLE001 - one row's failure is reported on its line; the run goes on
            lines.append({"row": row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        lines.append({"row": row, "explanation": json.loads(explanation.to_json())})
    return lines


def _feature_columns(predictor: Any, schema, path, columns: list[str] | None) -> list[str]:
    from engine.cli.score import _listing, _numeric_or_unknown

    width = _model_width(predictor)
    named = columns or list(getattr(predictor, "feature_names", None) or [])
    if named:
        missing = [c for c in named if c not in schema.names]
        if missing:
            raise UsageError(f"{path} has no column {missing[0]!r} (the model reads {_listing(named)}).")
        features = named
    else:
        features = [f.name for f in schema if _numeric_or_unknown(f.type)]
    if width is not None and len(features) != width:
        raise UsageError(f"the model takes {width} features but {len(features)} columns were chosen from {path} "
                         f"({_listing(features)}); name them with --columns a,b,c.")
    for column in features:
        if not _numeric_or_unknown(schema.field(column).type):
            raise UsageError(f"{path}: column {column!r} is not numeric ({schema.field(column).type}).")
    return features


def _matrix(table, features: list[str]) -> np.ndarray:
    from engine.cli.score import ScorePlan, feature_matrix

    return feature_matrix(table, ScorePlan("explain", features))


def read_train(path: Path, features: list[str]) -> np.ndarray:
    parts, held = [], 0
    for table in io.read_batches(path, features, features, 65_536):
        parts.append(_matrix(table, features))
        held += table.num_rows
        if held >= MAX_TRAIN_ROWS:
            break
    X = np.concatenate(parts)[:MAX_TRAIN_ROWS] if parts else np.empty((0, len(features)), np.float32)
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) < 2:
        raise UsageError(f"--train {path} has fewer than 2 complete rows to fit the explainer on.")
    return X


def input_batches(path: Path, features: list[str], batch_size: int) -> Iterator[np.ndarray]:
    for table in io.read_batches(path, features, features, batch_size):
        yield _matrix(table, features)


class LineWriter:
    """JSON lines to ``<output>.partial``, renamed to ``output`` when the run succeeds."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
            raise UsageError(f"output {self.path}: explanations are JSON lines; name the file .jsonl.")
        if not self.path.parent.is_dir():
            raise UsageError(f"output {self.path}: the folder {self.path.parent} does not exist.")
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._file = None
        self.rows = self.errors = 0

    def write(self, records: list[dict]) -> None:
        if self._file is None:
            self._file = open(self._partial, "w", encoding="utf-8")
        for record in records:
            if record["row"] != self.rows:
                raise RuntimeError(f"explanations came back out of order (row {record['row']}, expected {self.rows}).")
            self._file.write(json.dumps(record, allow_nan=False) + "\n")
            self.rows += 1
            self.errors += "error" in record

    def close(self) -> None:
        if self._file is None:
            self._file = open(self._partial, "w", encoding="utf-8")
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        self._partial.unlink(missing_ok=True)


def run(args, names, progress) -> int:
    from engine.cli import _native_stderr_held, import_engine

    model_path = io.check_readable(args.model, "model")
    train_path = io.check_readable(args.train, "train")
    input_path = io.check_readable(args.input, "input")
    io.file_format(train_path, "train")
    io.file_format(input_path, "input")
    writer = LineWriter(args.output)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}.")
    with _native_stderr_held():
        import_engine()
        from engine.errors import ModelError

        try:
            predictor = load_model(model_path)
        except ModelError as exc:
            raise UsageError(f"model {model_path}: {io._first_line(exc)}") from exc
    columns = names(args.columns)
    features = _feature_columns(predictor, io.schema(train_path), train_path, columns)
    _feature_columns(predictor, io.schema(input_path), input_path, features)
    spec = ExplainSpec(args.method, features, float(args.threshold), args.mode, int(args.seed))
    X_train = read_train(train_path, features)
    started = time.perf_counter()
    try:
        with progress(io.count_rows(input_path)) as bar:
            batches = input_batches(input_path, features, args.batch_size)
            if args.ray:
                from engine.cli import ray_backend

                ray_backend.explain_on_ray(model_path, spec, X_train, batches, writer, bar, address=args.ray,
                                           workers=args.workers)
            else:
                explainer = build_explainer(spec, predictor, X_train)
                for X in batches:
                    writer.write(explain_rows(explainer, spec, X, writer.rows))
                    bar.update(len(X))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - started
    print(f"lantern explain {args.method}: {writer.rows:,} rows, {writer.rows - writer.errors:,} explained, "
          f"{writer.errors:,} errors, {seconds:.1f} s -> {args.output}")
    return 0


def model_on_worker(model_bytes: bytes, name: str) -> Any:
    """Load the model from its bytes on a Ray worker (a remote node may not see the driver's files)."""
    from engine.predictors import kind_of

    return load_model(model_bytes, kind=kind_of(name))
