"""Small Keras classifiers for tabular and image data, trained through the shared loop.

The adversarial-detection, CEM and anchors workflows need a classifier to attack or explain.
This module builds one from the data's shape (:func:`build_classifier`: an MLP for tabular rows,
a small CNN for images given as flat pixel rows), trains it with
:func:`engine.training.train` (:func:`train_classifier`), predicts in bounded-memory compiled
batches (:func:`predict_proba`), and encodes string labels as ``0..k-1`` (:class:`LabelEncoder`).

It also holds the two helpers every consumer of *someone else's* classifier needs:
:func:`output_kind` tells whether a model returns probabilities or logits (one sigmoid column
counts as a binary classifier), and :func:`log_probabilities` turns either into
``(n, k)`` log-probabilities with ``k >= 2``.

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(64, 4)).astype('float32')
>>> y = (X[:, 0] > 0).astype(int)
>>> net = build_classifier(4, 2, seed=0)
>>> history, metrics = train_classifier(net, X, y, epochs=2, seed=0)
>>> sorted(metrics)
['n_classes', 'train_accuracy']
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from engine.errors import DataError
from engine.nets import seeded_initializers
from engine.training import TrainingConfig, TrainingHistory, train
from engine.validation import as_float_array

__all__ = [
    "LabelEncoder",
    "build_classifier",
    "train_classifier",
    "predict_proba",
    "accuracy",
    "output_kind",
    "log_probabilities",
    "probabilities",
]

#: Largest number of rows sent through a network in one call, whatever batch size is asked for,
#: so inference memory stays bounded on large inputs.
MAX_INFERENCE_ROWS = 4096

_LOG_FLOOR = 1e-30


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


class LabelEncoder:
    """Map class labels (strings, numbers, booleans) to ``0..k-1`` and back, keeping the names.

    Classes are sorted (as strings when the labels mix types), so the encoding does not depend on
    row order.

    Examples
    --------
    >>> enc = LabelEncoder().fit(['benign', 'malignant', 'benign'])
    >>> enc.classes_
    ['benign', 'malignant']
    >>> enc.transform(['malignant', 'benign']).tolist()
    [1, 0]
    >>> enc.inverse_transform([0, 1])
    ['benign', 'malignant']
    """

    def __init__(self) -> None:
        self.classes_: list | None = None

    @staticmethod
    def _as_list(labels) -> list:
        values = np.asarray(labels, dtype=object).ravel().tolist()
        for value in values:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise DataError("the labels contain missing values; drop those rows or fill the label column.")
        return [v.item() if isinstance(v, np.generic) else v for v in values]

    def fit(self, labels) -> "LabelEncoder":
        """Learn the sorted set of classes in ``labels``."""
        values = self._as_list(labels)
        if not values:
            raise DataError("no labels given: the label column is empty.")
        unique = set(values)
        try:
            self.classes_ = sorted(unique)
        except TypeError:  # mixed types: order by their text
            self.classes_ = sorted(unique, key=str)
        return self

    def transform(self, labels) -> np.ndarray:
        """Codes ``0..k-1`` of ``labels``; an unseen label raises :class:`DataError`."""
        if self.classes_ is None:
            raise DataError("LabelEncoder is not fitted: call fit(labels) first.")
        index = {c: i for i, c in enumerate(self.classes_)}
        values = self._as_list(labels)
        unseen = [v for v in values if v not in index]
        if unseen:
            raise DataError(f"label(s) {sorted(set(map(str, unseen)))[:5]} were not seen when the encoder was fitted.")
        return np.asarray([index[v] for v in values], dtype=np.int64)

    def fit_transform(self, labels) -> np.ndarray:
        """``fit(labels)`` then ``transform(labels)``."""
        return self.fit(labels).transform(labels)

    def inverse_transform(self, codes) -> list:
        """The class names of integer ``codes``."""
        if self.classes_ is None:
            raise DataError("LabelEncoder is not fitted: call fit(labels) first.")
        codes = np.asarray(codes).ravel()
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.classes_)):
            raise DataError(f"codes must lie in 0..{len(self.classes_) - 1}.")
        return [self.classes_[int(c)] for c in codes]

    @property
    def n_classes(self) -> int:
        return 0 if self.classes_ is None else len(self.classes_)


def _check_labels(y, n_rows: int, n_classes: int | None = None, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise DataError(f"{name} must be a 1-D array with one integer label per row ({n_rows}), got shape {y.shape}.")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{name} must hold integer class codes 0..k-1; encode text labels with LabelEncoder first.")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{name} holds negative class codes; use codes 0..k-1 (LabelEncoder makes them).")
    if n_classes is not None and y.size and y.max() >= n_classes:
        raise DataError(f"{name} holds class code {int(y.max())} but the classifier has only {n_classes} outputs.")
    return y


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def _image_shape(n_features: int, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    if image_shape is None:
        side = int(round(math.sqrt(n_features)))
        if side * side != n_features:
            raise ValueError(
                f"kind='cnn' needs image_shape=(height, width[, channels]): {n_features} features "
                "is not a square image."
            )
        image_shape = (side, side)
    shape = tuple(int(d) for d in image_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or any(d < 1 for d in shape):
        raise ValueError(f"image_shape must be (height, width) or (height, width, channels), got {image_shape}.")
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape {tuple(image_shape)} holds {int(np.prod(shape))} pixels, but there are {n_features} features."
        )
    return shape


def build_classifier(
    n_features: int,
    n_classes: int,
    kind: str = "mlp",
    *,
    image_shape: Sequence[int] | None = None,
    hidden: Sequence[int] | None = None,
    filters: Sequence[int] = (16, 32),
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Sequential:
    """A classifier ``flat features → softmax over n_classes`` as a ``keras.Sequential``.

    Parameters
    ----------
    n_features : int
        Number of input columns (for images: pixels, stored row-major, flattened).
    n_classes : int
        Number of classes (at least 2); the output is a softmax over them.
    kind : {'mlp', 'cnn'}
        'mlp': dense layers. 'cnn': the flat row is reshaped to ``image_shape`` and passed through
        ``Conv2D(3x3, relu) + MaxPooling2D`` blocks (one per entry of ``filters``; pooling only while
        the map is at least 4 pixels wide), then dense layers.
    image_shape : (height, width) or (height, width, channels), optional
        For 'cnn'; a square single-channel image is assumed when omitted.
    hidden : sequence of int, optional
        Dense layer widths before the output; ``(64,)`` for 'mlp' and ``(64,)`` after the
        convolutions for 'cnn' by default.
    filters : sequence of int
        Convolution widths for 'cnn'.
    activation : str
        Hidden activation.
    dropout : float
        Dropout rate after each hidden dense layer (0 = none).
    seed : int, optional
        Seeds every layer's initialiser (no global seed is touched).

    Returns
    -------
    keras.Sequential
        Built, uncompiled, made only of layers that :mod:`engine.saving` archives.

    Examples
    --------
    >>> build_classifier(64, 10, 'cnn', image_shape=(8, 8), seed=0).output_shape
    (None, 10)
    """
    n_features, n_classes = int(n_features), int(n_classes)
    if n_features < 1:
        raise ValueError(f"n_features must be at least 1, got {n_features}.")
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got n_classes={n_classes}.")
    if kind not in ("mlp", "cnn"):
        raise ValueError(f"kind must be 'mlp' or 'cnn', got {kind!r}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    hidden = (64,) if hidden is None else tuple(int(h) for h in hidden)
    init = seeded_initializers(seed)

    layers: list = [keras.Input((n_features,))]
    if kind == "cnn":
        shape = _image_shape(n_features, image_shape)
        layers.append(keras.layers.Reshape(shape))
        width = min(shape[0], shape[1])
        for n_filters in filters:
            layers.append(keras.layers.Conv2D(int(n_filters), 3, padding="same", activation=activation,
                                              kernel_initializer=init()))
            if width >= 4:
                layers.append(keras.layers.MaxPooling2D(2))
                width //= 2
        layers.append(keras.layers.Flatten())
    for units in hidden:
        layers.append(keras.layers.Dense(units, activation=activation, kernel_initializer=init()))
        if dropout > 0:
            layers.append(keras.layers.Dropout(float(dropout)))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=init()))
    return keras.Sequential(layers, name=name)


def _sparse_xent(target, outputs):
    return keras.losses.sparse_categorical_crossentropy(target, outputs)


def train_classifier(
    model: keras.Model,
    X,
    y,
    config: TrainingConfig | None = None,
    *,
    validation: tuple[Any, Any] | None = None,
    **settings: Any,
) -> tuple[TrainingHistory, dict[str, float]]:
    """Train a softmax classifier on integer labels with sparse categorical cross-entropy.

    Parameters
    ----------
    model : keras.Model
        A classifier returning probabilities, e.g. from :func:`build_classifier`; trained in place.
    X : array-like, shape (n, n_features)
    y : array-like of int, shape (n,)
        Class codes ``0..k-1`` (see :class:`LabelEncoder`).
    config : TrainingConfig, optional
        Epochs, batch size, optimizer, seed, callbacks, progress, cancellation, time budget, ...;
        progress events carry the running ``accuracy`` (the config's ``log_metric`` is replaced).
    validation : (X_val, y_val), optional
        Held-out data whose accuracy is reported as ``val_accuracy``.

    Returns
    -------
    history : TrainingHistory
        Per-epoch loss and ``history.metrics['accuracy']``.
    metrics : dict
        ``train_accuracy`` (of the trained model on ``X``), ``val_accuracy`` (with
        ``validation``) and ``n_classes``.

    Other Parameters
    ----------------
    **settings
        :class:`~engine.training.TrainingConfig` fields by name (``epochs=5``, ``seed=0``, ...),
        replacing those of ``config``.

    Examples
    --------
    >>> X = np.eye(4, dtype='float32').repeat(8, axis=0); y = np.arange(4).repeat(8) % 2
    >>> _, m = train_classifier(build_classifier(4, 2, seed=1), X, y, epochs=3, seed=0)
    >>> 0.0 <= m['train_accuracy'] <= 1.0
    True
    """
    n_inputs = model.inputs[0].shape[-1] if getattr(model, "inputs", None) else None
    X = as_float_array(X, ndim=2, n_features=n_inputs)
    n_classes = int(model.output_shape[-1]) if hasattr(model, "output_shape") else None
    y = _check_labels(y, len(X), n_classes)
    config = TrainingConfig.of(config, **settings)
    metric = ("accuracy", keras.metrics.SparseCategoricalAccuracy())
    history = train(model, _sparse_xent, X, y, config=config.replace(log_metric=metric))
    metrics: dict[str, float] = {"train_accuracy": accuracy(model, X, y), "n_classes": n_classes}
    if validation is not None:
        X_val = as_float_array(validation[0], name="X_val", ndim=2, n_features=X.shape[1])
        y_val = _check_labels(validation[1], len(X_val), n_classes, name="y_val")
        metrics["val_accuracy"] = accuracy(model, X_val, y_val)
    return history, metrics


# --------------------------------------------------------------------------------------------
# Inference on any classifier
# --------------------------------------------------------------------------------------------


def output_kind(model: keras.Model, X, max_rows: int = 64) -> str:
    """Whether ``model`` returns ``'probabilities'`` or ``'logits'``, judged on a few rows of ``X``.

    Outputs in [0, 1] whose rows sum to 1 are probabilities (softmax); a single column in [0, 1]
    is a sigmoid probability of the positive class. Anything else is taken as logits.

    Examples
    --------
    >>> output_kind(build_classifier(3, 2, seed=0), np.zeros((2, 3), 'float32'))
    'probabilities'
    """
    outputs = np.asarray(model(np.asarray(X[:max_rows], dtype=np.float32), training=False), dtype=np.float64)
    if outputs.ndim != 2:
        raise DataError(f"the classifier returns shape {outputs.shape}; a (n, n_classes) output is expected.")
    in_unit = bool(np.all((outputs >= -1e-6) & (outputs <= 1 + 1e-6)))
    if outputs.shape[1] == 1:
        return "probabilities" if in_unit else "logits"
    sums_to_one = bool(np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))
    return "probabilities" if in_unit and sums_to_one else "logits"


def log_probabilities(outputs: tf.Tensor, kind: str) -> tf.Tensor:
    """``(n, k)`` log-probabilities, ``k >= 2``, from a classifier's raw outputs.

    A single output column is the positive class of a binary classifier and becomes two columns
    ``[negative, positive]``, so divergences and cross-entropies see both classes.
    """
    outputs = tf.cast(outputs, tf.float32)
    if kind == "probabilities":
        if outputs.shape[-1] == 1:
            p = tf.clip_by_value(outputs, 0.0, 1.0)
            return tf.math.log(tf.maximum(tf.concat([1.0 - p, p], axis=-1), _LOG_FLOOR))
        return tf.math.log(tf.maximum(outputs, _LOG_FLOOR))
    if kind == "logits":
        if outputs.shape[-1] == 1:
            return tf.concat([tf.math.log_sigmoid(-outputs), tf.math.log_sigmoid(outputs)], axis=-1)
        return tf.nn.log_softmax(outputs, axis=-1)
    raise ValueError(f"kind must be 'probabilities' or 'logits', got {kind!r}.")


def probabilities(outputs: tf.Tensor, kind: str) -> tf.Tensor:
    """``(n, k)`` class probabilities, ``k >= 2``, from a classifier's raw outputs."""
    outputs = tf.cast(outputs, tf.float32)
    if kind == "probabilities":
        if outputs.shape[-1] == 1:
            p = tf.clip_by_value(outputs, 0.0, 1.0)
            return tf.concat([1.0 - p, p], axis=-1)
        return outputs
    return tf.exp(log_probabilities(outputs, kind))


def batch_slices(n_rows: int, batch_size: int, max_rows: int = MAX_INFERENCE_ROWS):
    """``slice`` objects covering ``range(n_rows)`` in chunks of at most ``min(batch_size, max_rows)``."""
    step = max(1, min(int(batch_size), int(max_rows)))
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def predict_proba(model: keras.Model, X, batch_size: int = 1024, kind: str | None = None) -> np.ndarray:
    """Class probabilities ``(n, k)`` of any Keras classifier, in compiled bounded-memory batches.

    ``kind`` ('probabilities' or 'logits') is detected with :func:`output_kind` when omitted.

    Examples
    --------
    >>> predict_proba(build_classifier(3, 4, seed=0), np.zeros((5, 3), 'float32')).shape
    (5, 4)
    """
    X = as_float_array(X)
    kind = kind or output_kind(model, X)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(batch):
        return probabilities(model(batch, training=False), kind)

    return np.concatenate([step(tf.constant(X[s])).numpy() for s in batch_slices(len(X), batch_size)], axis=0)


def accuracy(model: keras.Model, X, y, batch_size: int = 1024) -> float:
    """Share of rows whose most probable class equals ``y``."""
    X = as_float_array(X)
    y = _check_labels(y, len(X))
    return float(np.mean(predict_proba(model, X, batch_size).argmax(axis=1) == y))
