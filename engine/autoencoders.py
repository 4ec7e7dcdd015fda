"""Small dense autoencoders, trained through the shared loop.

CEM's optional ``gamma`` term keeps an explanation close to the data by penalising its
reconstruction error under an autoencoder trained on the classifier's training rows. This module
builds such an autoencoder from the data's shape (:func:`build_autoencoder`), trains it with
:func:`engine.training.train` on the mean squared reconstruction error
(:func:`train_autoencoder`) and measures that error (:func:`reconstruction_mse`).

Examples
--------
>>> import numpy as np
>>> X = np.random.default_rng(0).uniform(size=(64, 8)).astype('float32')
>>> ae = build_autoencoder(8, output_activation='sigmoid', seed=0)
>>> history, metrics = train_autoencoder(ae, X, epochs=2, seed=0)
>>> ae.output_shape, sorted(metrics)
((None, 8), ['train_mse'])
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from engine.classifiers import batch_slices
from engine.nets import seeded_initializers
from engine.training import TrainingConfig, TrainingHistory, train
from engine.validation import as_float_array

__all__ = ["build_autoencoder", "train_autoencoder", "reconstruction_mse", "default_latent"]


def default_latent(n_features: int) -> int:
    """Code width used when none is given: half the features, between 2 and 32.

    Examples
    --------
    >>> default_latent(4), default_latent(64), default_latent(784)
    (2, 32, 32)
    """
    return int(max(2, min(32, int(n_features) // 2)))


def build_autoencoder(
    n_features: int,
    *,
    latent: int | None = None,
    hidden: Sequence[int] | None = None,
    activation: str = "relu",
    output_activation: str = "linear",
    input_shape: Sequence[int] | None = None,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Sequential:
    """A dense autoencoder ``features → hidden… → latent → …hidden → features``.

    Parameters
    ----------
    n_features : int
        Number of input values per instance (for images: pixels).
    latent : int, optional
        Width of the code; :func:`default_latent` when omitted.
    hidden : sequence of int, optional
        Widths of the encoder's layers before the code (mirrored in the decoder). By default none
        for up to 128 features and ``(128,)`` above.
    activation : str
        Activation of the hidden layers and of the code.
    output_activation : str
        ``'sigmoid'`` for data scaled to [0, 1] (images), ``'linear'`` for standardised rows.
    input_shape : sequence of int, optional
        Shape of one instance when it is not a flat row, e.g. ``(8, 8, 1)``: the input is flattened
        first and the output reshaped back. Its size must equal ``n_features``.
    seed : int, optional
        Seeds the dense layers' initialisers in order (``seed``, ``seed + 1``, …); no global seed is
        touched.

    Returns
    -------
    keras.Sequential
        Built, uncompiled, made only of layers that :mod:`engine.saving` archives.

    Examples
    --------
    >>> [layer.units for layer in build_autoencoder(64, seed=0).layers]
    [32, 64]
    >>> build_autoencoder(64, input_shape=(8, 8, 1)).output_shape
    (None, 8, 8, 1)
    """
    n_features = int(n_features)
    if n_features < 1:
        raise ValueError(f"n_features must be at least 1, got {n_features}.")
    latent = default_latent(n_features) if latent is None else int(latent)
    if latent < 1:
        raise ValueError(f"latent must be at least 1, got {latent}.")
    if hidden is None:
        hidden = (128,) if n_features > 128 else ()
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden layer widths must be at least 1, got {hidden}.")
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
        if int(np.prod(input_shape)) != n_features:
            raise ValueError(f"input_shape {input_shape} holds {int(np.prod(input_shape))} values, but "
                             f"n_features is {n_features}.")
    init = seeded_initializers(seed)

    def dense(units: int, act: str):
        return keras.layers.Dense(units, activation=act, kernel_initializer=init())

    layers: list = [keras.Input(input_shape or (n_features,))]
    if input_shape is not None:
        layers.append(keras.layers.Flatten())
    layers += [dense(h, activation) for h in hidden]
    layers.append(dense(latent, activation))
    layers += [dense(h, activation) for h in reversed(hidden)]
    layers.append(dense(n_features, output_activation))
    if input_shape is not None:
        layers.append(keras.layers.Reshape(input_shape))
    return keras.Sequential(layers, name=name)


def _mse(target, outputs):
    return keras.ops.mean(keras.ops.square(target - outputs))


def train_autoencoder(
    model: keras.Model,
    X,
    config: TrainingConfig | None = None,
    *,
    validation=None,
    **settings: Any,
) -> tuple[TrainingHistory, dict[str, float]]:
    """Train ``model`` to reproduce ``X`` (mean squared error), in place.

    Parameters
    ----------
    model : keras.Model
        An autoencoder, e.g. from :func:`build_autoencoder`.
    X : array-like, shape (n, *instance_shape)
    config : TrainingConfig, optional
        Epochs, batch size, optimizer, seed, callbacks, progress, cancellation, time budget, ...
    validation : array-like, optional
        Held-out rows whose reconstruction error is reported as ``val_mse``.

    Returns
    -------
    history : TrainingHistory
    metrics : dict
        ``train_mse`` (and ``val_mse`` with ``validation``): mean squared reconstruction error.

    Other Parameters
    ----------------
    **settings
        :class:`~engine.training.TrainingConfig` fields by name (``epochs=5``, ``seed=0``, ...),
        replacing those of ``config``.

    Examples
    --------
    >>> X = np.zeros((16, 4), 'float32')
    >>> _, m = train_autoencoder(build_autoencoder(4, seed=0), X, epochs=1, seed=0)
    >>> m['train_mse'] >= 0
    True
    """
    X = as_float_array(X)
    history = train(model, _mse, X, config=TrainingConfig.of(config, **settings))
    metrics = {"train_mse": reconstruction_mse(model, X)}
    if validation is not None:
        metrics["val_mse"] = reconstruction_mse(model, as_float_array(validation, name="validation"))
    return history, metrics


def reconstruction_mse(model: keras.Model, X, batch_size: int = 1024) -> float:
    """Mean squared reconstruction error of ``model`` over all values of ``X`` (bounded-memory batches).

    Examples
    --------
    >>> reconstruction_mse(build_autoencoder(4, seed=0), np.zeros((3, 4), 'float32'))
    0.0
    """
    X = as_float_array(X)
    total = 0.0
    for rows in batch_slices(len(X), batch_size):
        batch = tf.constant(X[rows])
        total += float(tf.reduce_sum(tf.square(model(batch, training=False) - batch)))
    return total / X.size
