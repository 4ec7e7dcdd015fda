"""Input checks shared by every detector and explainer.

Each check turns a bad array into a :class:`~engine.errors.DataError` whose message names the
problem and the fix, instead of letting a TensorFlow shape error surface.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.errors import DataError


def as_float_array(
    X,
    *,
    name: str = "X",
    ndim: int | Sequence[int] | None = None,
    n_features: int | None = None,
    min_rows: int = 1,
    allow_nan: bool = False,
    dtype=np.float32,
) -> np.ndarray:
    """Convert ``X`` to a finite floating-point array and check its shape.

    Parameters
    ----------
    X : array-like
        The data to check.
    name : str
        Name used in error messages.
    ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    n_features : int, optional
        Required size of the last axis.
    min_rows : int
        Minimum size of the first axis.
    allow_nan : bool
        Accept NaN (never inf).
    dtype : numpy dtype
        Floating dtype of the result.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> as_float_array([[1, 2], [3, 4]], n_features=2).shape
    (2, 2)
    """
    if X is None:
        raise DataError(f"{name} is None: pass a numeric array with one row per instance.")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged nested lists and similar
        raise DataError(f"{name} could not be turned into an array ({exc}); pass rows of equal length.") from exc
    if arr.dtype == object or arr.dtype.kind in "USV":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{name} contains non-numeric values ({exc}). Encode text columns as numbers or "
                "leave them out of the feature columns."
            ) from exc
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{name} has dtype {arr.dtype}; a numeric array is needed.")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            shapes = " or ".join(f"{d}-D" for d in allowed)
            raise DataError(f"{name} has shape {arr.shape} ({arr.ndim}-D); a {shapes} array is expected.")
    if arr.ndim == 0 or arr.shape[0] < min_rows:
        rows = 0 if arr.ndim == 0 else arr.shape[0]
        raise DataError(f"{name} has {rows} rows; at least {min_rows} needed.")
    if n_features is not None and arr.shape[-1] != n_features:
        raise DataError(
            f"{name} has {arr.shape[-1]} features but the model was built for {n_features}; "
            "use the same columns as during training."
        )
    arr = arr.astype(dtype, copy=False)
    bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        shown = ", ".join(str(r) for r in rows[:5]) + (" …" if rows.size > 5 else "")
        what = "inf" if allow_nan else "NaN or inf"
        raise DataError(
            f"{name} contains {what} values in {rows.size} row(s) (rows {shown}); drop or impute them first."
        )
    return arr


def _converted(value, convert, name: str, expected: str):
    """``convert(value)``, or a ValueError saying ``name`` must be ``expected``."""
    try:
        return convert(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be {expected}, got {value!r}.") from exc


def check_percentile(value, name: str) -> float:
    """Check a percentage in [0, 100] and return it as float.

    Examples
    --------
    >>> check_percentile("95", "threshold_perc")
    95.0
    """
    value = _converted(value, float, name, "a number between 0 and 100")
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be between 0 and 100, got {value}.")
    return value


def check_positive_int(value, name: str) -> int:
    """Check a whole number of at least 1 (``3.0`` counts, ``2.5`` does not) and return it as int.

    Examples
    --------
    >>> check_positive_int(3.0, "seq_len")
    3
    """
    as_int = _converted(value, int, name, "a positive integer")
    if as_int != value or as_int < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return as_int
