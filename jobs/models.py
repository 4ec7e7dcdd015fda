"""Generic model jobs: train a classifier or an autoencoder, measure an uploaded classifier.

The trained network comes back as a :class:`Network` (its :mod:`engine.nets` spec and weights), which a
later job rebuilds; an uploaded model travels as a :class:`ModelFile` (its file's bytes) and is loaded
again where the job runs. Used by the adversarial, CEM and anchors workflows. This module never imports
streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from engine.autoencoders import build_autoencoder, train_autoencoder
from engine.classifiers import build_classifier, predict_proba, train_classifier
from engine.nets import build_sequential, describe_sequential
from engine.saving import model_weights, set_model_weights
from engine.training import TrainingHistory
from jobs.base import Progress

PREDICT_BATCH_ROWS = 4096  # rows per call of an uploaded model


# ------------------------------------------------------------------------------------------------ values


@dataclass
class FitSettings:
    """The training settings every Keras job shares (what ``ui.training.controls`` offers)."""

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0

    def options(self, progress: Progress, report: Callable | None = None) -> dict:
        """The engine's ``fit`` keywords: a fresh Adam optimizer, the progress callback, cancel and time budget."""
        return dict(epochs=int(self.epochs), batch_size=int(self.batch_size),
                    optimizer=keras.optimizers.Adam(learning_rate=float(self.learning_rate)), seed=int(self.seed),
                    verbose=False, progress=report or progress.report, cancel=progress.cancel,
                    time_budget=getattr(progress, "time_budget", None))


@dataclass
class Network:
    """A Keras network as its :mod:`engine.nets` spec and weights; :meth:`build` makes the model (once).

    Examples
    --------
    >>> from engine.classifiers import build_classifier
    >>> net = Network.of(build_classifier(4, 2, seed=0))
    >>> net.build().output_shape
    (None, 2)
    """

    spec: dict
    weights: dict[str, np.ndarray]
    _model: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, model: keras.Model, prefix: str = "net") -> Network:
        return cls(describe_sequential(model), model_weights(prefix, model))

    def build(self, name: str | None = None) -> keras.Model:
        """The network with its trained weights (built on first use, then reused)."""
        if self._model is None:
            model = build_sequential(self.spec, name=name)
            prefix = next(iter(self.weights), "net/0").split("/", 1)[0]
            set_model_weights(prefix, model, self.weights)
            self._model = model
        return self._model

    def __getstate__(self) -> dict:  # a built model stays where it was built
        return {"spec": self.spec, "weights": self.weights, "_model": None}


@dataclass
class ModelFile:
    """An uploaded classifier as its file's bytes, loaded again by :meth:`load` where the job runs."""

    data: bytes
    kind: str  # 'onnx', 'keras' or 'sklearn' (engine.predictors.load_predictor)
    trusted: bool = False
    max_mb: int | None = None

    def load(self) -> Any:
        from engine.predictors import load_predictor  # onnxruntime and friends on first use only

        return load_predictor(bytes(self.data), kind=self.kind, max_mb=self.max_mb, trusted=bool(self.trusted))


def stage_after_training(progress: Progress, history: TrainingHistory, outcome: str | None = None) -> None:
    """Say how training ended: epochs, ``outcome`` (or the final loss), and whether the time budget stopped it."""
    final = f"final loss {history.loss[-1]:.4g}" if history.loss else "no epoch completed"
    progress.set_stage(f"{history.epochs_run} epoch(s), {outcome or final}"
                       + (" (stopped at the time budget)" if history.stopped == "time_budget" else ""), 1.0)


# ------------------------------------------------------------------------------------------------ classifier


@dataclass
class ClassifierRequest:
    """Train a classifier (:func:`engine.classifiers.build_classifier`) on ``X``/``y``.

    ``X_val``/``y_val`` are held-out rows: their accuracy is reported (and, with ``return_val_proba``, their
    class probabilities returned). ``network`` holds ``build_classifier``'s ``kind`` and keywords.
    """

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    network: dict = field(default_factory=lambda: {"kind": "mlp", "hidden": (128, 64)})
    image_shape: tuple[int, ...] | None = None
    fit: FitSettings = field(default_factory=FitSettings)
    return_val_proba: bool = False
    show_accuracy: bool = True  # the stage line shows the training accuracy each epoch


@dataclass
class ClassifierAnswer:
    network: Network
    history: TrainingHistory
    train_accuracy: float
    val_accuracy: float
    metrics: dict[str, float]
    val_proba: np.ndarray | None = None


def train_classifier_job(request: ClassifierRequest, progress: Progress) -> ClassifierAnswer:
    """Build and train the classifier; the trained network comes back as its spec and weights.

    Examples
    --------
    >>> answer = train_classifier_job(ClassifierRequest(X, y, X_test, y_test, n_classes=3), progress)  # doctest: +SKIP
    >>> answer.network.build().predict(X_test)                                                          # doctest: +SKIP
    """
    network = dict(request.network)
    model = build_classifier(int(request.X.shape[1]), int(request.n_classes), network.pop("kind", "mlp"),
                             image_shape=None if request.image_shape is None else tuple(request.image_shape),
                             seed=int(request.fit.seed), **network)

    def report(event) -> None:
        progress.report(event)
        if request.show_accuracy and "accuracy" in event.metrics:
            progress.set_stage(f"epoch {event.epoch}/{event.epochs} · loss {event.loss:.4g} · training accuracy "
                               f"{event.metrics['accuracy']:.3f}")

    history, metrics = train_classifier(model, request.X, request.y, validation=(request.X_val, request.y_val),
                                        **request.fit.options(progress, report))
    metrics = {k: float(v) for k, v in metrics.items()}
    stage_after_training(progress, history, f"test accuracy {metrics['val_accuracy']:.3f}")
    val_proba = None
    if request.return_val_proba:
        progress.set_stage("predicting the held-out rows", 1.0)
        val_proba = predict_proba(model, request.X_val)
    return ClassifierAnswer(Network.of(model), history, metrics["train_accuracy"], metrics["val_accuracy"], metrics,
                            val_proba)


# ------------------------------------------------------------------------------------------------ autoencoder


@dataclass
class AutoencoderRequest:
    """Train a dense autoencoder (:func:`engine.autoencoders.build_autoencoder`) on ``X``; MSE on ``X_val``."""

    X: np.ndarray
    X_val: np.ndarray
    output_activation: str | None = "sigmoid"
    fit: FitSettings = field(default_factory=FitSettings)


@dataclass
class AutoencoderAnswer:
    network: Network
    history: TrainingHistory
    val_mse: float
    metrics: dict[str, float]


def train_autoencoder_job(request: AutoencoderRequest, progress: Progress) -> AutoencoderAnswer:
    """Build and train the autoencoder; it comes back as its spec and weights."""
    model = build_autoencoder(int(request.X.shape[1]), output_activation=request.output_activation,
                              seed=int(request.fit.seed))
    history, metrics = train_autoencoder(model, request.X, validation=request.X_val, **request.fit.options(progress))
    metrics = {k: float(v) for k, v in metrics.items()}
    stage_after_training(progress, history, f"test reconstruction MSE {metrics['val_mse']:.4g}")
    return AutoencoderAnswer(Network.of(model), history, metrics["val_mse"], metrics)


# ------------------------------------------------------------------------------------------------ uploaded model


@dataclass
class UploadedAccuracyRequest:
    """Measure an uploaded classifier on training and test rows (in the table's units).

    ``y_train``/``y_test`` are labels as the model's output columns (-1: not a class of the model).
    """

    model: ModelFile
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@dataclass
class UploadedAccuracyAnswer:
    train_accuracy: float | None  # None when no label is a class of the model
    test_accuracy: float | None


def predict_in_batches(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                       batch_rows: int = PREDICT_BATCH_ROWS) -> np.ndarray:
    """``predict`` over ``X`` in bounded batches (one array of probabilities)."""
    X = np.asarray(X, dtype=np.float32)
    parts = [np.asarray(predict(X[s:s + batch_rows]), dtype=np.float64) for s in range(0, len(X), batch_rows)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def accuracy(proba: np.ndarray, y_model: np.ndarray) -> float | None:
    """Share of rows whose label (a model column; -1 = not a class of the model) the model predicts.

    Examples
    --------
    >>> accuracy(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 0, -1]))
    0.5
    """
    y_model = np.asarray(y_model)
    known = y_model >= 0
    if not known.any():
        return None
    return float(np.mean(np.asarray(proba)[known].argmax(axis=1) == y_model[known]))


def uploaded_accuracy(request: UploadedAccuracyRequest, progress: Progress) -> UploadedAccuracyAnswer:
    """Load the uploaded model and measure its accuracy on the training and test rows."""
    progress.set_stage("predicting the rows with your model", 0.0)
    predictor = request.model.load()
    train = accuracy(predict_in_batches(predictor, request.X_train), request.y_train)
    test = accuracy(predict_in_batches(predictor, request.X_test), request.y_test)
    progress.set_stage("your model is ready" + ("" if test is None else f", test accuracy {test:.3f}"), 1.0)
    return UploadedAccuracyAnswer(train, test)


class _BlackBoxProbabilities(keras.layers.Layer):
    """A black-box predictor (a function of numpy rows) as a Keras layer: forward passes only, no gradients."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], n_classes: int, **kwargs) -> None:
        super().__init__(trainable=False, **kwargs)
        self._predict = predict
        self.n_classes = int(n_classes)

    def call(self, x):
        def run(rows):
            return np.asarray(self._predict(rows), dtype=np.float32)

        out = tf.numpy_function(run, [x], tf.float32, stateful=False)
        out.set_shape((None, self.n_classes))
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_classes)


def teacher_network(predictor: Any, offset: np.ndarray, scale: np.ndarray) -> keras.Model:
    """An uploaded model as a Keras classifier of scaled rows: ``x * scale + offset`` are the table's values.

    A white-box (Keras) model is wrapped as is, so gradients flow through it; any other model is called
    as a black box inside the graph (forward passes only: distillation, scoring, predictions).
    """
    n_features = int(predictor.n_features)
    to_table = keras.layers.Rescaling(np.asarray(scale, dtype=np.float32), np.asarray(offset, dtype=np.float32),
                                      name="to_table_units")
    inner = predictor.keras_model if predictor.white_box else _BlackBoxProbabilities(predictor, predictor.n_classes)
    return keras.Sequential([keras.Input((n_features,)), to_table, inner], name="own_model")
