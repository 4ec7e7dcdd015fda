"""The one training loop every model in the engine goes through.

``train`` runs compiled steps (``tf.function``) over ``tf.data`` batches and reports progress
after every batch and epoch to a callback, so the app can draw a live loss curve. It can be
cancelled from another thread through a :class:`CancelToken`, stops at a wall-clock budget,
honours Keras callbacks (``EarlyStopping`` and friends), and is reproducible under a seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from engine.errors import DataError, TrainingCancelled, TrainingDivergedError

logger = logging.getLogger(__name__)


class CancelToken:
    """A flag another thread sets to stop training at the next batch.

    ``cancel()`` abandons the run (:func:`train` raises :class:`TrainingCancelled`); ``stop()`` asks it to stop
    early and keep what it learned: :func:`train` ends after the current batch with ``history.stopped='stopped'``,
    as at the time budget, and the caller goes on (scores, saves) with the partly trained model.

    Examples
    --------
    >>> token = CancelToken()
    >>> token.stop()
    >>> token.stop_requested, token.cancelled
    (True, False)
    >>> token.cancel()
    >>> token.cancelled
    True
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Ask the running job to stop."""
        self._event.set()

    def stop(self) -> None:
        """Ask the running training to stop early and keep the model it has so far."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called (the run ends early but is kept)."""
        return self._stop.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`TrainingCancelled` when cancellation was requested."""
        if self._event.is_set():
            raise TrainingCancelled("Training was cancelled.")


@dataclass
class TrainingEvent:
    """Progress after one batch (``kind='batch'``) or one epoch (``kind='epoch'``).

    ``loss`` is the mean loss so far in the current epoch; ``metrics`` holds the ``log_metric``
    value under its name.
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    metrics: dict[str, float]
    elapsed: float

    @property
    def fraction_done(self) -> float:
        """Share of all batches done, in [0, 1]."""
        total = max(self.epochs * self.steps_per_epoch, 1)
        return min(((self.epoch - 1) * self.steps_per_epoch + self.step) / total, 1.0)


@dataclass
class TrainingHistory:
    """What a training run did: per-epoch losses and metrics and why it stopped.

    ``stopped`` is 'completed', 'time_budget', 'stopped' (the cancel token's ``stop()``: stopped early on
    request, the model is kept) or 'callback' (a Keras callback set ``model.stop_training``).
    """

    loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    stopped: str = "completed"
    seconds: float = 0.0


ProgressFn = Callable[[TrainingEvent], None]


@dataclass(frozen=True)
class TrainingConfig:
    """How a network is trained: the settings every training in the engine shares.

    One object carries them from a detector's ``fit`` (or :func:`engine.autoencoders.train_autoencoder`,
    :func:`engine.classifiers.train_classifier`) to the one loop, :func:`train`. What is particular to one
    model (its loss, its targets, ``preprocess_fn``) is passed to :func:`train` beside it.

    Parameters
    ----------
    optimizer : str, keras optimizer class or instance
        Optimizer; the reference's default is Adam.
    epochs, batch_size : int
        Number of passes over the data and samples per step (both at least 1).
    shuffle : bool
        Shuffle the samples every epoch.
    seed : int, optional
        Seed of the shuffling, for reproducible runs (no global seed is set).
    verbose : bool
        Log the loss after every epoch.
    log_metric : (str, keras.metrics.Metric), optional
        A metric updated with ``(target, outputs)`` every batch and reported by name.
    callbacks : keras callback or list of them, optional
        Called as in ``model.fit``; setting ``model.stop_training`` stops the run.
    progress : callable, optional
        Receives a :class:`TrainingEvent` after every batch and every epoch.
    cancel : CancelToken, optional
        When cancelled, the run raises :class:`~engine.errors.TrainingCancelled` at the next batch.
    time_budget : float, optional
        Wall-clock seconds after which training stops (at a batch boundary) with
        ``stopped='time_budget'``.

    Examples
    --------
    >>> config = TrainingConfig(epochs=5, seed=0)
    >>> config.replace(batch_size=32).batch_size, config.batch_size
    (32, 64)
    """

    optimizer: Any = "adam"
    epochs: int = 20
    batch_size: int = 64
    shuffle: bool = True
    seed: int | None = None
    verbose: bool = False
    log_metric: tuple[str, keras.metrics.Metric] | None = None
    callbacks: Iterable[keras.callbacks.Callback] | keras.callbacks.Callback | None = None
    progress: ProgressFn | None = None
    cancel: CancelToken | None = None
    time_budget: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")

    def replace(self, **settings: Any) -> "TrainingConfig":
        """A copy with ``settings`` changed; an unknown name raises ``TypeError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TypeError(f"unknown training setting(s) {unknown}; the settings are {sorted(names)}.")
        return dataclasses.replace(self, **settings) if settings else self

    @classmethod
    def of(cls, config: "TrainingConfig | None" = None, **settings: Any) -> "TrainingConfig":
        """``config`` (the defaults when None) with ``settings`` changed: the keyword form of every trainer.

        Examples
        --------
        >>> TrainingConfig.of(None, epochs=3).epochs
        3
        """
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}.")
        return (config if config is not None else cls()).replace(**settings)


def resolve_optimizer(optimizer: Any) -> keras.optimizers.Optimizer:
    """Turn a name (``'adam'``), an optimizer class or an instance into an optimizer instance."""
    if optimizer is None:
        return keras.optimizers.Adam()
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, keras.optimizers.Optimizer):
        return optimizer()
    if isinstance(optimizer, (str, dict)):
        return keras.optimizers.get(optimizer)
    raise TypeError(
        f"optimizer must be a name such as 'adam', a keras optimizer class or instance, got {optimizer!r}."
    )


@contextlib.contextmanager
def _direct_updates(optimizer: keras.optimizers.Optimizer):
    """Let ``optimizer`` update variables directly while no ``tf.distribute`` strategy is active.

    Keras' TensorFlow optimizers route every variable update through ``tf.distribute`` (merge call,
    ``extended.update``) even under the default, single-device strategy. Traced inside a
    ``tf.function``, that path keeps the function's whole graph alive after the model, the
    optimizer and the function are gone: about 10 MB of server memory per training that never
    comes back (a long-running shared demo trains thousands of models). Outside a real strategy
    the routing does nothing but call ``update_step`` per variable, so this calls it directly, for
    the duration of one :func:`train`, and restores the optimizer afterwards.
    """
    if (not hasattr(type(optimizer), "_backend_update_step") or tf.distribute.has_strategy()
            or "_backend_update_step" in vars(optimizer)):
        yield
        return

    def update(grads, trainable_variables, learning_rate):
        for grad, variable in zip(grads, trainable_variables):
            optimizer.update_step(grad, variable.value if isinstance(variable, keras.Variable) else variable,
                                  learning_rate)

    optimizer._backend_update_step = update
    try:
        yield
    finally:
        del optimizer._backend_update_step


def _make_dataset(x, y, batch_size: int, shuffle: bool, seed: int | None) -> tf.data.Dataset:
    tensors = (x,) if y is None else (x, y)
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        n = len(x) if not isinstance(x, (tuple, list)) else len(x[0])
        dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train(
    model: keras.Model,
    loss_fn: Callable[..., tf.Tensor],
    x: np.ndarray,
    y: np.ndarray | None = None,
    config: TrainingConfig | None = None,
    *,
    preprocess_fn: Callable | None = None,
    loss_kwargs: dict | None = None,
    trainable_variables: list | None = None,
    **settings: Any,
) -> TrainingHistory:
    """Train ``model`` to minimise ``loss_fn(target, model(x))``.

    The target is ``y`` when given, else ``x`` (autoencoders). Losses the model adds itself
    (``model.losses``) are added to the loss.

    Parameters
    ----------
    model : keras.Model
        The model to train; its trainable variables are updated in place.
    loss_fn : callable
        ``loss_fn(target, outputs, **loss_kwargs)`` returning a scalar (or per-sample) loss.
    x, y : numpy.ndarray
        Training inputs and optional targets, first axis = samples.
    config : TrainingConfig, optional
        Optimizer, epochs, batch size, shuffling, seed, logging, metric, callbacks, progress,
        cancellation and time budget; the defaults of :class:`TrainingConfig` when omitted.
    **settings
        Any :class:`TrainingConfig` field by name (``epochs=5``, ``cancel=token``, ...),
        replacing the one in ``config``.
    preprocess_fn : callable, optional
        Applied to each input batch before the step.
    loss_kwargs : dict, optional
        Extra keyword arguments for ``loss_fn``.
    trainable_variables : list, optional
        Variables to train; defaults to ``model.trainable_variables``.

    Returns
    -------
    TrainingHistory

    Raises
    ------
    TrainingDivergedError
        When the loss becomes NaN or inf.
    TrainingCancelled
        When ``cancel`` was set.

    Examples
    --------
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> mse = lambda t, o: keras.ops.mean((t - o) ** 2)
    >>> history = train(model, mse, np.ones((32, 2), 'float32'), epochs=2, seed=0)
    >>> history.epochs_run
    2
    """
    config = TrainingConfig.of(config, **settings)
    optimizer, epochs, batch_size, shuffle, seed = (config.optimizer, config.epochs, config.batch_size,
                                                    config.shuffle, config.seed)
    verbose, log_metric, callbacks = config.verbose, config.log_metric, config.callbacks
    progress, cancel, time_budget = config.progress, config.cancel, config.time_budget
    loss_kwargs = dict(loss_kwargs or {})
    optimizer = resolve_optimizer(optimizer)
    n_samples = len(x)
    if n_samples == 0:
        raise DataError("there are no training rows; pass at least one sample.")
    batch_size = int(min(batch_size, n_samples))
    steps_per_epoch = math.ceil(n_samples / batch_size)
    dataset = _make_dataset(x, y, batch_size, shuffle, seed)

    if not model.built:
        model(x[:1])
    variables = trainable_variables if trainable_variables is not None else model.trainable_variables
    if not getattr(optimizer, "built", False):
        optimizer.build(variables)
    metric_name, metric = (log_metric if log_metric is not None else (None, None))

    def step(inputs, target):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = tf.reduce_mean(loss_fn(target, outputs, **loss_kwargs))
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        if metric is not None:
            metric.update_state(target, outputs)
        return loss

    # Trace once for every batch size (the last batch of an epoch is usually shorter); with a
    # preprocess_fn the batch shapes are the function's business, so let TF relax them itself.
    spec = dataset.element_spec
    signature = None if preprocess_fn is not None else [spec[0], spec[1] if y is not None else spec[0]]
    train_step = tf.function(step, input_signature=signature, reduce_retracing=True, autograph=False)

    callback_list = keras.callbacks.CallbackList(
        callbacks if isinstance(callbacks, (list, tuple)) else ([callbacks] if callbacks else []),
        add_history=False,
        add_progbar=False,
        model=model,
        epochs=epochs,
        steps=steps_per_epoch,
        verbose=0,
    )
    model.stop_training = False
    history = TrainingHistory()
    if metric_name:
        history.metrics[metric_name] = []
    start = time.perf_counter()
    callback_list.on_train_begin()
    with _direct_updates(optimizer):
        for epoch in range(1, epochs + 1):
            callback_list.on_epoch_begin(epoch - 1)
            if metric is not None:
                metric.reset_state()
            loss_sum, step = 0.0, 0
            for batch in dataset:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                inputs = batch[0]
                target = batch[1] if y is not None else inputs
                if preprocess_fn is not None:
                    inputs = preprocess_fn(inputs)
                    if y is None:
                        target = inputs
                callback_list.on_train_batch_begin(step)
                loss = float(train_step(inputs, target))
                if not math.isfinite(loss):
                    raise TrainingDivergedError(
                        f"the loss became {loss} in epoch {epoch}, batch {step + 1}: lower the learning rate, "
                        "standardise the features, or remove extreme rows."
                    )
                step += 1
                loss_sum += loss
                logs = {"loss": loss_sum / step}
                if metric is not None:
                    logs[metric_name] = float(metric.result())
                callback_list.on_train_batch_end(step - 1, logs)
                elapsed = time.perf_counter() - start
                if progress is not None:
                    progress(TrainingEvent("batch", epoch, epochs, step, steps_per_epoch, logs["loss"],
                                           {k: v for k, v in logs.items() if k != "loss"}, elapsed))
                if time_budget is not None and elapsed >= time_budget:
                    history.stopped = "time_budget"
                    break
                if cancel is not None and cancel.stop_requested:
                    history.stopped = "stopped"
                    break
                if model.stop_training:
                    history.stopped = "callback"
                    break
            epoch_loss = loss_sum / max(step, 1)
            history.loss.append(epoch_loss)
            history.epochs_run = epoch
            epoch_logs = {"loss": epoch_loss}
            if metric is not None:
                epoch_logs[metric_name] = float(metric.result())
                history.metrics[metric_name].append(epoch_logs[metric_name])
            callback_list.on_epoch_end(epoch - 1, epoch_logs)
            elapsed = time.perf_counter() - start
            if progress is not None:
                progress(TrainingEvent("epoch", epoch, epochs, steps_per_epoch if history.stopped == "completed" else step,
                                       steps_per_epoch, epoch_loss,
                                       {k: v for k, v in epoch_logs.items() if k != "loss"}, elapsed))
            if verbose:
                logger.info("epoch %d/%d loss %.5f", epoch, epochs, epoch_loss)
            if history.stopped == "completed" and model.stop_training:
                history.stopped = "callback"
            if history.stopped == "completed" and time_budget is not None and elapsed >= time_budget:
                history.stopped = "time_budget"
            if history.stopped != "completed":
                break
    callback_list.on_train_end()
    history.seconds = time.perf_counter() - start
    return history
