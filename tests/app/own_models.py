"""Model files the own-model tests upload: scikit-learn models exported to ONNX / skops, and a small Keras model.

Each is trained on a bundled dataset with the columns and encoding a page uses by default, so the page's
feature columns (in their default order) are the model's inputs.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from engine.datasets import get_dataset, load_dataset
from engine.tabular import classification_data
from engine.ingest import table_from_frame


def _data(key: str, features: list[str] | None = None, seed: int = 0):
    info = get_dataset(key)
    table = table_from_frame(load_dataset(key), name=info.title, roles=dict(info.roles))
    columns = features or [c for c in table.frame.columns if table.roles.get(c) in ("feature", "categorical")]
    return classification_data(table.frame, columns, table.label, categorical=table.columns_with_role("categorical"),
                               max_train_rows=5000, seed=seed)


def _onnx(model, X: np.ndarray) -> bytes:
    import skl2onnx

    return skl2onnx.to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}}).SerializeToString()


def _logistic_onnx(key: str, *, max_iter: int) -> bytes:
    """Logistic regression on dataset ``key``'s default features, predicting its label values, as ONNX bytes."""
    from sklearn.linear_model import LogisticRegression

    data = _data(key)
    y = np.asarray(data.class_names)[data.y_train]
    return _onnx(LogisticRegression(max_iter=max_iter).fit(data.X_train, y), data.X_train)


def _trained_keras(model, data, name: str, *, epochs: int, batch_size: int, learning_rate: float) -> bytes:
    """Train ``model`` on ``data``'s training rows (Adam, seed 0) and return its ``.keras`` file's bytes."""
    import keras

    from engine.classifiers import train_classifier

    train_classifier(model, data.X_train.astype(np.float32), data.y_train, epochs=epochs, batch_size=batch_size,
                     seed=0, optimizer=keras.optimizers.Adam(learning_rate=learning_rate), verbose=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        model.save(path)
        return path.read_bytes()


@functools.lru_cache(maxsize=None)
def adult_forest_onnx() -> bytes:
    """A small random forest on Adult's 14 default features, predicting its label values ('<=50K', '>50K')."""
    from sklearn.ensemble import RandomForestClassifier

    data = _data("adult")
    y = np.asarray(data.class_names)[data.y_train]
    model = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0).fit(data.X_train, y)
    return _onnx(model, data.X_train)


@functools.lru_cache(maxsize=None)
def iris_logistic_onnx() -> bytes:
    """Logistic regression on iris's four measurements, predicting the species names."""
    return _logistic_onnx("iris", max_iter=1000)


@functools.lru_cache(maxsize=None)
def iris_keras() -> bytes:
    """A softmax regression on iris's measurements (table units), saved as a .keras file."""
    import keras

    data = _data("iris")
    mean, std = data.X_train.mean(axis=0), data.X_train.std(axis=0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Normalization(mean=mean, variance=std**2),
                              keras.layers.Dense(3, activation="softmax")])
    return _trained_keras(model, data, "iris.keras", epochs=100, batch_size=16, learning_rate=0.05)


@functools.lru_cache(maxsize=None)
def digits_logistic_onnx() -> bytes:
    """Logistic regression on the 8 × 8 digits' 64 pixels, classes 0-9."""
    return _logistic_onnx("digits", max_iter=2000)


@functools.lru_cache(maxsize=None)
def digits_keras() -> bytes:
    """A small dense network on the 8 × 8 digits' pixels (0-16), classes 0-9, saved as a .keras file."""
    import keras

    data = _data("digits")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Rescaling(1 / 16),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    return _trained_keras(model, data, "digits.keras", epochs=30, batch_size=32, learning_rate=0.01)


@functools.lru_cache(maxsize=None)
def iris_named_skops() -> bytes:
    """Logistic regression fitted on a DataFrame of iris's measurements in reverse order: it stores their names."""
    import pandas as pd
    import skops.io
    from sklearn.linear_model import LogisticRegression

    data = _data("iris")
    columns = list(reversed(data.feature_names))
    frame = pd.DataFrame(data.X_train[:, ::-1], columns=columns)
    y = np.asarray(data.class_names)[data.y_train]
    return skops.io.dumps(LogisticRegression(max_iter=1000).fit(frame, y))
