"""Own models: a model file (ONNX, Keras ``.keras``, scikit-learn ``.skops``) as a class-probability function.

``load_predictor`` reads the file (a path or its bytes), refuses what is too large, unsafe or not a classifier
giving probabilities with a ``ModelError`` that says how to fix it, and returns a ``Predictor``: call it on rows,
get probabilities. ONNX runs no code of the file and is always allowed; ``.keras`` and ``.skops`` build Python
objects described by the file, so they are allowed only in trusted mode (``LANTERN_TRUSTED=1`` or
``trusted=True``), and then only from Keras' own layers / skops' default trusted types.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Union

from engine.errors import ModelError
from engine.predictors.base import (CHUNK_ROWS, DEFAULT_MAX_MB, KINDS, Predictor, check_predictor, default_max_mb,
                                    default_trusted)

__all__ = ["load_predictor", "check_predictor", "Predictor", "ModelError", "KINDS", "CHUNK_ROWS", "DEFAULT_MAX_MB",
           "kind_of"]

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]
_EXTENSIONS = {".onnx": "onnx", ".keras": "keras", ".skops": "sklearn"}
_ZIP_MAGIC = b"PK\x03\x04"


def kind_of(source: Source) -> str:
    """The kind of model a path (by its extension) or bytes (by their first bytes) hold.

    Examples
    --------
    >>> kind_of("model.onnx")
    'onnx'
    >>> kind_of(b"\\x08\\x08\\x12\\x07skl2onnx")
    'onnx'
    """
    if isinstance(source, (str, os.PathLike)):
        suffix = Path(source).suffix.lower()
        if suffix not in _EXTENSIONS:
            raise ModelError(f"cannot tell the model type of {Path(source).name!r} from its extension: use .onnx, "
                             ".keras (Keras 3) or .skops (scikit-learn saved with skops), or pass kind=.")
        return _EXTENSIONS[suffix]
    data = bytes(source)
    if data[:4] == _ZIP_MAGIC:
        import io
        import zipfile

        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, ValueError) as exc:
            raise ModelError(f"the file starts like a zip archive but is not a readable one ({exc}).") from exc
        if {"config.json", "metadata.json"} <= names:
            return "keras"
        if "schema.json" in names:
            return "sklearn"
        raise ModelError("the file is a zip archive but neither a Keras .keras model (config.json + metadata.json) "
                         "nor a skops model (schema.json).")
    # An ONNX model is a protobuf message, written by every exporter starting with field 1 (ir_version, a
    # varint): byte 0x08. Otherwise, a message that parses and holds a graph (field 7) is taken as ONNX too.
    if data[:1] == b"\x08":
        return "onnx"
    from engine.predictors import onnx_graph

    try:
        onnx_graph.read_nodes(data)
        return "onnx"
    except onnx_graph.WireError:
        pass
    raise ModelError("the file is not a model Lantern reads: expected ONNX (.onnx), Keras 3 (.keras) or "
                     "scikit-learn saved with skops (.skops).")


def load_predictor(source: Source, *, kind: str | None = None, max_mb: float | None = None,
                   trusted: bool | None = None) -> Predictor:
    """Load a classifier from a model file as a function from rows to class probabilities.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file object
        A path to the model file, its content, or an open binary file (e.g. an upload), read up to the limit.
    kind : {'onnx', 'keras', 'sklearn'}, optional
        The model format. By default it comes from the extension of a path (``.onnx``, ``.keras``, ``.skops``)
        or from the first bytes of the content (a ``.keras`` zip holds ``config.json`` and ``metadata.json``, a
        ``.skops`` zip holds ``schema.json``, anything else starting like a protobuf is taken as ONNX).
    max_mb : float, optional
        Largest file accepted, in MB (2**20 bytes); checked before anything is parsed. Default: the
        ``LANTERN_MAX_MODEL_MB`` environment variable, else 100.
    trusted : bool, optional
        Allow Keras and scikit-learn files (they describe Python objects to build; even restricted to Keras'
        layers and skops' trusted types, they are meant for deployments whose users are trusted). Default
        (None): True when the environment variable ``LANTERN_TRUSTED`` is ``1``. ONNX is allowed either way.

    Returns
    -------
    Predictor
        ``predictor(X)`` gives float64 probabilities of shape ``(n, predictor.n_classes)``; see ``Predictor``
        for ``kind``, ``n_features``, ``class_names``, ``feature_names``, ``keras_model``, ``white_box``,
        ``size_bytes``, ``describe()`` and ``check(X)``.

    Raises
    ------
    ModelError
        The file is too large, unreadable, of an unknown format, not allowed (Keras/scikit-learn without
        trusted mode), unsafe (Lambda layers, custom objects, untrusted skops types, zip bombs), or not a
        classifier that outputs class probabilities from one float matrix. The message says how to fix it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skl2onnx import to_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> model = LogisticRegression(max_iter=500).fit(X, y)
    >>> predictor = load_predictor(to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    >>> predictor(X[:2]).shape
    (2, 3)
    >>> predictor.describe()
    'ONNX classifier, 4 inputs, 3 classes (0, 1, 2)'
    """
    if kind is not None and kind not in KINDS:
        raise ModelError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    limit_mb = default_max_mb() if max_mb is None else float(max_mb)
    max_bytes = int(limit_mb * 2**20)
    trusted = default_trusted() if trusted is None else bool(trusted)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind = kind or kind_of(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ModelError(f"cannot read the model file {path.name!r} ({exc.strerror or exc}).") from exc
        _check_size(size, limit_mb)
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)) or callable(getattr(source, "read", None)):
        # A binary file object (an upload) is read up to one byte past the limit, never more.
        data = bytes(source) if not hasattr(source, "read") else source.read(max_bytes + 1)
        if not isinstance(data, bytes):
            raise ModelError("the model file must be opened in binary mode.")
        _check_size(len(data), limit_mb)
        if not data:
            raise ModelError("the model file is empty.")
        kind = kind or kind_of(data)
    else:
        raise ModelError(f"cannot read a model from a {type(source).__name__}; pass a path, the file's bytes or a "
                         "binary file object.")
    if kind != "onnx" and not trusted:
        title = "Keras" if kind == "keras" else "scikit-learn"
        raise ModelError(f"{title} model files are allowed only in trusted mode (LANTERN_TRUSTED=1), since loading "
                         "them builds Python objects the file describes. Export the model to ONNX instead (ONNX "
                         "runs no code), or ask the administrator to enable trusted mode.")
    reload = functools.partial(load_predictor, data, kind=kind, max_mb=limit_mb, trusted=True)
    if kind == "onnx":
        from engine.predictors.onnx_model import load_onnx

        return load_onnx(data, reload=reload)
    if kind == "keras":
        from engine.predictors.keras_model import load_keras

        return load_keras(data, max_bytes=max_bytes, reload=reload)
    from engine.predictors.sklearn_model import load_sklearn

    return load_sklearn(data, max_bytes=max_bytes, reload=reload)


def _check_size(size: int, limit_mb: float) -> None:
    if size > limit_mb * 2**20:
        raise ModelError(f"the model file is {size / 2**20:,.1f} MB; the limit is {limit_mb:g} MB "
                         "(LANTERN_MAX_MODEL_MB). Use a smaller model, or raise the limit where you run Lantern.")
