"""The ``Predictor`` every loader returns, its output checks, and the limits shared by the loaders."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Callable

import numpy as np

from engine.archive_checks import MAX_COMPRESSION_RATIO, zip_problem
from engine.errors import ModelError

KINDS = ("onnx", "keras", "sklearn")
DEFAULT_MAX_MB = 100
CHUNK_ROWS = 8192
MAX_ZIP_MEMBERS = 1000
CHECK_ROWS = 32
SUM_TOLERANCE = 1e-3
_KIND_TITLES = {"onnx": "ONNX", "keras": "Keras", "sklearn": "scikit-learn"}


def default_max_mb() -> float:
    """``LANTERN_MAX_MODEL_MB`` from the environment, else 100 (MB of the model file)."""
    raw = os.environ.get("LANTERN_MAX_MODEL_MB", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_MAX_MB
    except ValueError:
        value = DEFAULT_MAX_MB
    return value if value > 0 else DEFAULT_MAX_MB


def default_trusted() -> bool:
    """``LANTERN_TRUSTED=1`` in the environment: the deployment allows Keras and scikit-learn model files."""
    return os.environ.get("LANTERN_TRUSTED", "0") == "1"


def check_zip(data: bytes, *, max_bytes: int, what: str) -> zipfile.ZipFile:
    """Open a zip container after bounding what it may unpack to (member count, total size, compression ratio).

    The same ratio limit as Lantern's own archives applies to members over 1 MiB; the total uncompressed size
    may be at most twice the model size limit.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ModelError(f"the {what} file is not a readable zip archive ({exc}); save the model again.") from exc
    problem = zip_problem(zf.infolist(), max_total_bytes=2 * max_bytes, max_members=MAX_ZIP_MEMBERS)
    if problem is not None and problem.kind == "members":
        raise ModelError(f"the {what} file holds {problem.value:,} members (the limit is {MAX_ZIP_MEMBERS:,}); "
                         "this is not a model file as its library writes it.")
    if problem is not None and problem.kind == "ratio":
        raise ModelError(f"the {what} file's member {problem.member!r} expands {problem.value:,.0f} times "
                         f"(the limit is {MAX_COMPRESSION_RATIO}): refused as a zip bomb.")
    if problem is not None:
        raise ModelError(f"the {what} file unpacks to more than {2 * max_bytes / 2**20:,.0f} MB (twice the "
                         "model size limit): refused as a zip bomb. Raise LANTERN_MAX_MODEL_MB if the model "
                         "is genuinely this large.")
    return zf


def probability_problem(proba: np.ndarray) -> str | None:
    """Why ``proba`` (n, k) is not a matrix of class probabilities, or None when it is."""
    if proba.ndim != 2 or proba.shape[1] < 2:
        columns = proba.shape[1] if proba.ndim == 2 else "no"
        return f"the output has {columns} column(s) per row, not one per class (at least 2)"
    if not np.all(np.isfinite(proba)):
        return "the output holds NaN or inf"
    if np.any(proba < -SUM_TOLERANCE) or np.any(proba > 1 + SUM_TOLERANCE):
        return f"the output has values outside [0, 1] (from {proba.min():.4g} to {proba.max():.4g})"
    sums = proba.sum(axis=1)
    worst = np.abs(sums - 1.0).max()
    if worst > SUM_TOLERANCE:
        return f"rows do not sum to 1 (row sums from {sums.min():.4g} to {sums.max():.4g})"
    return None


class Predictor:
    """A loaded model as a function from rows to class probabilities.

    Call it on an array of shape ``(n, n_features)``; it returns float64 probabilities of shape
    ``(n, n_classes)`` whose rows sum to 1. Inputs are cast to contiguous float32 (float64 for an ONNX model
    whose input is double) and run in chunks of
    ``CHUNK_ROWS`` rows, so memory stays bounded whatever ``n`` is. Make one with
    ``engine.predictors.load_predictor``.

    Attributes
    ----------
    kind : str
        ``'onnx'``, ``'keras'`` or ``'sklearn'``.
    n_features : int
        Width of the rows the model takes.
    class_names : list of str
        One name per output column, from the model where it stores them, else ``'0'``, ``'1'``, ...
    n_classes : int
        Number of output columns.
    feature_names : list of str or None
        Input column names stored in the model (scikit-learn's ``feature_names_in_``), else None.
    keras_model : keras.Model or None
        For a Keras model only: a model giving the same ``n_classes`` probability columns, for white-box
        methods (gradients).
    white_box : bool
        Whether gradients are available (True only for Keras models).
    size_bytes : int
        Size of the model file.

    Examples
    --------
    >>> import numpy as np
    >>> p = Predictor("onnx", lambda x: np.full((len(x), 2), 0.5), n_features=3, class_names=["no", "yes"],
    ...               size_bytes=10)
    >>> p(np.zeros((4, 3))).shape
    (4, 2)
    >>> p.describe()
    'ONNX classifier, 3 inputs, 2 classes (no, yes)'
    """

    def __init__(self, kind: str, run: Callable[[np.ndarray], np.ndarray], *, n_features: int,
                 class_names: list[str], size_bytes: int, feature_names: list[str] | None = None,
                 keras_model=None, reload: Callable[[], "Predictor"] | None = None, input_dtype=np.float32):
        self.kind = kind
        self.n_features = int(n_features)
        self.class_names = [str(c) for c in class_names]
        self.n_classes = len(self.class_names)
        self.feature_names = None if feature_names is None else [str(f) for f in feature_names]
        self.keras_model = keras_model
        self.white_box = keras_model is not None
        self.size_bytes = int(size_bytes)
        self._run = run
        self._reload = reload
        self._input_dtype = input_dtype

    def __call__(self, X) -> np.ndarray:
        """Class probabilities of the rows of ``X``: float64 of shape ``(n, n_classes)``."""
        x = np.asarray(X, dtype=self._input_dtype)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelError(f"the model takes rows of {self.n_features} values, got an array of shape {x.shape}; "
                             f"choose the {self.n_features} columns the model was trained on, in its order.")
        x = np.ascontiguousarray(x)
        if len(x) <= CHUNK_ROWS:
            return self._run(x)
        return np.concatenate([self._run(x[i:i + CHUNK_ROWS]) for i in range(0, len(x), CHUNK_ROWS)])

    def check(self, X) -> np.ndarray:
        """Run the model on the first rows of ``X`` and make sure it answers with class probabilities.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
            The user's data, in the columns chosen for the model.

        Returns
        -------
        numpy.ndarray
            The probabilities of the rows checked.

        Raises
        ------
        ModelError
            When the width of ``X`` differs from ``n_features``, or the output holds NaN/inf, negative values
            or rows that do not sum to 1.

        Examples
        --------
        >>> import numpy as np
        >>> p = Predictor("onnx", lambda x: np.full((len(x), 2), 0.5), n_features=2, class_names=["a", "b"],
        ...               size_bytes=1)
        >>> p.check(np.zeros((3, 2))).shape
        (3, 2)
        """
        x = np.asarray(X)
        if x.ndim != 2:
            raise ModelError(f"the data must be a table (rows × columns), got an array of shape {x.shape}.")
        if x.shape[1] != self.n_features:
            names = f" ({', '.join(self.feature_names)})" if self.feature_names else ""
            raise ModelError(f"the model takes {self.n_features} inputs{names} but {x.shape[1]} columns are chosen; "
                             f"choose the model's {self.n_features} feature columns, in the order it was trained on.")
        try:
            x = x[:CHECK_ROWS].astype(self._input_dtype)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"the chosen columns are not all numeric ({exc}); the model needs numbers.") from exc
        if not np.all(np.isfinite(x)):
            raise ModelError("the chosen columns hold missing or infinite values; fill or drop them first.")
        try:
            proba = self(x)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the model failed on the first rows of the data ({type(exc).__name__}: {exc}).") from exc
        problem = probability_problem(proba)
        if problem is not None:
            raise ModelError(f"on the first rows of the data {problem}: the model must return class probabilities.")
        return proba

    def describe(self) -> str:
        """One line for the UI: kind, inputs and classes."""
        shown = ", ".join(self.class_names[:6]) + (", …" if self.n_classes > 6 else "")
        box = ", white-box" if self.white_box else ""
        return (f"{_KIND_TITLES.get(self.kind, self.kind)} classifier{box}, {self.n_features} inputs, "
                f"{self.n_classes} classes ({shown})")

    def __repr__(self) -> str:
        return f"<Predictor {self.describe()}>"

    def __reduce__(self):
        # Sessions and loaded models do not pickle; a copy (to a worker process or a Ray actor) reloads the file.
        if self._reload is None:
            raise TypeError("this predictor was not loaded from a model file and cannot be copied to another process.")
        return (_call, (self._reload,))


def _call(factory):
    return factory()


def check_predictor(predictor: Predictor, X) -> np.ndarray:
    """Same as ``predictor.check(X)``.

    Examples
    --------
    >>> import numpy as np
    >>> p = Predictor("onnx", lambda x: np.full((len(x), 2), 0.5), n_features=2, class_names=["a", "b"],
    ...               size_bytes=1)
    >>> check_predictor(p, np.zeros((1, 2))).tolist()
    [[0.5, 0.5]]
    """
    return predictor.check(X)
