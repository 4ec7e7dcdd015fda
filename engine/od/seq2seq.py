"""Sequence-to-sequence (Seq2Seq) outlier detector for univariate and multivariate time series.

The model:

1. a bidirectional LSTM encoder reads a window of ``seq_len`` steps; its final forward and
   backward states are joined into the latent state ``(h, c)`` of size ``latent_dim``;
2. an LSTM decoder started from that state produces one hidden state per step, and a Dense
   layer maps each to the reconstructed step ``x̂_t``;
3. a threshold network maps each decoder state to ``ê_t``, the squared reconstruction error
   expected at that step for each feature on normal data.

Training minimises ``mean ℓ(x, x̂) + beta · mean (ê − sg[(x − x̂)²])²`` where ``ℓ`` is the
reconstruction loss (mean squared error by default) and ``sg`` stops the gradient. The threshold
term only trains the threshold network: its target (the squared error) and its input (the
decoder states) are both cut from the gradient, so

- it never pulls the reconstruction towards errors that are merely *predictable* rather than
  small (target cut), and
- it never teaches the decoder states to encode "this window will be hard to reconstruct"
  (input cut). When they do, as in the reference, the threshold network learns to predict a
  large error for unusual windows, and ``ê`` cancels the very error that makes an outlier: on
  ECG5000 (one seed, checkpoints every 50 epochs up to 400) ROC-AUC drifted down to 0.70 with
  the shared gradient and stayed between 0.98 and 1.00 with the cut.

With the two terms training disjoint weights, ``beta`` scales the threshold network's
gradient; adaptive optimisers such as Adam are nearly insensitive to that scale.

Scores, per step ``t`` and feature ``f``::

    feature_score[t, f] = (x[t, f] − x̂[t, f])² − ê[t, f] − threshold[f]
    instance_score      = mean of the top ⌈outlier_perc %⌉ feature scores of the instance

and a step or an instance is an outlier when its score is above 0. ``threshold`` is one number
or one per feature; it starts at 0 (as in the reference), so right after ``fit`` the threshold
network's estimate ``ê`` is the threshold and ``predict`` works at once.

Differences from the reference implementation (alibi-detect), on purpose:

- **No teacher forcing, one compiled pass.** The reference trains the decoder on the true
  previous step and, at inference, feeds back its own predictions in a Python loop, one model
  call per step: slow, and at scoring time the decoder runs on inputs (its own predictions) it
  never saw in training (exposure bias). Here the decoder is never shown the series: its input
  is the relative position of each step (``t / (seq_len − 1)``) and everything it knows about the
  window comes through the encoder state. Training and scoring run the very same computation:
  one ``tf.function`` call for a whole batch of windows, chunked with bounded memory. (A decoder
  fed back its own predictions inside a compiled recurrent cell scored about as well in our trials
  but trained 1.7× slower.)
- **No silently dropped points.** A 2-D series ``(n, features)`` is cut into consecutive windows
  of ``seq_len`` steps; when ``n`` is not a multiple of ``seq_len`` one more window, aligned to
  the end of the series, covers the rest, and every score is mapped back to its time step (the
  reference drops the ragged end).
- **``infer_threshold`` honours a per-feature list at any ``outlier_perc``.** As in the reference
  it updates the threshold additively and keeps a scalar threshold scalar; a per-feature
  ``threshold_perc`` gives each feature its own threshold from its own feature scores whatever
  ``outlier_perc`` is (the reference treats that case differently when ``outlier_perc < 100``).
- **Standardisation is stored with the detector.** ``fit`` fits a
  :class:`~engine.preprocessing.Standardizer` on the training series; raw series go in, and
  scores, squared errors and thresholds are in standardised units (so features of different
  scales are comparable). Reconstructions are returned in the original units.
- Default networks are built from ``n_features`` and ``latent_dim`` (seeded per layer), training
  goes through :func:`engine.training.train` (live progress, cancel, time budget), and the
  detector saves to a Lantern archive.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from engine.base import BaseDetector, ThresholdMixin, outlier_prediction_dict
from engine.errors import ArchiveError, DataError, NotFittedError
from engine.nets import build_sequential, describe_sequential, seeded
from engine.preprocessing import Standardizer
from engine.saving import model_weights, register_archivable, set_model_weights
from engine.training import CancelToken, ProgressFn, TrainingConfig, TrainingHistory, train
from engine.validation import as_float_array, check_percentile, check_positive_int

logger = logging.getLogger(__name__)
GLOROT, ORTHOGONAL = keras.initializers.GlorotUniform, keras.initializers.Orthogonal

__all__ = ["OutlierSeq2Seq", "Seq2Seq", "default_latent_dim", "default_threshold_net", "seq2seq_loss",
           "threshold_scores"]

# Floats held per compiled scoring call (inputs, decoder states, outputs): bounds memory
# whatever batch_size the caller passes (the reference's default is 1e10).
MAX_FLOATS_PER_STEP = 1 << 23
# Hidden width of the default threshold network.
THRESHOLD_NET_UNITS = 64


def default_latent_dim(n_features: int) -> int:
    """The latent size used when none is given: 64, or 16 per feature for wide series, at most 256.

    Examples
    --------
    >>> default_latent_dim(1), default_latent_dim(8), default_latent_dim(40)
    (64, 128, 256)
    """
    return int(min(256, max(64, 16 * int(n_features))))


def default_threshold_net(seq_len: int, latent_dim: int, *, seed: int | None = None) -> keras.Sequential:
    """Two ReLU layers of 64 units applied to every decoder state ``(seq_len, latent_dim)``.

    :class:`Seq2Seq` puts a linear ``Dense(n_features)`` head after it, so the network may end
    with any width.

    Examples
    --------
    >>> default_threshold_net(50, 32).output_shape
    (None, 50, 64)
    """
    return keras.Sequential(
        [
            keras.Input((int(seq_len), int(latent_dim))),
            keras.layers.Dense(THRESHOLD_NET_UNITS, activation="relu", kernel_initializer=seeded(GLOROT, seed, 0)),
            keras.layers.Dense(THRESHOLD_NET_UNITS, activation="relu", kernel_initializer=seeded(GLOROT, seed, 1)),
        ],
        name="threshold_net",
    )


class Seq2Seq(keras.Model):
    """Bidirectional-LSTM encoder, LSTM decoder and threshold-estimation network.

    Called on windows ``x`` of shape ``(batch, seq_len, n_features)`` it returns
    ``(x_recon, threshold_est)``, both of that shape.

    Parameters
    ----------
    n_features : int
        Features per step.
    seq_len : int
        Steps per window.
    latent_dim : int, optional
        Size of the latent state and of the decoder (rounded up to an even number: each encoder
        direction has ``latent_dim / 2`` units). Default :func:`default_latent_dim`.
    threshold_net : keras.Sequential, optional
        Layers applied to each decoder state before the linear ``Dense(n_features)`` head that
        estimates the expected squared error. Default :func:`default_threshold_net`.
    output_activation : str, optional
        Activation of the Dense layer producing the reconstruction.
    seed : int, optional
        Seed of the weight initialisers (per layer; no global state is touched).

    Examples
    --------
    >>> model = Seq2Seq(n_features=2, seq_len=20, latent_dim=16, seed=0)
    >>> recon, threshold_est = model(np.zeros((3, 20, 2), 'float32'))
    >>> tuple(recon.shape), tuple(threshold_est.shape)
    ((3, 20, 2), (3, 20, 2))
    """

    def __init__(
        self,
        n_features: int,
        seq_len: int,
        latent_dim: int | None = None,
        threshold_net: keras.Sequential | None = None,
        output_activation: str | None = None,
        seed: int | None = None,
        name: str = "seq2seq",
    ) -> None:
        super().__init__(name=name)
        self.n_features = check_positive_int(n_features, "n_features")
        self.seq_len = check_positive_int(seq_len, "seq_len")
        latent = (default_latent_dim(self.n_features) if latent_dim is None
                  else check_positive_int(latent_dim, "latent_dim"))
        units = math.ceil(latent / 2)
        self.latent_dim = 2 * units
        self.output_activation = output_activation

        def lstm(n, offset, **kwargs):
            return keras.layers.LSTM(
                n, kernel_initializer=seeded(GLOROT, seed, offset),
                recurrent_initializer=seeded(ORTHOGONAL, seed, offset + 1), **kwargs,
            )

        self.encoder = keras.layers.Bidirectional(
            lstm(units, 10, return_state=True),
            backward_layer=lstm(units, 20, return_state=True, go_backwards=True),
            name="encoder",
        )
        self.decoder = lstm(self.latent_dim, 30, return_sequences=True, name="decoder")
        self.output_layer = keras.layers.Dense(
            self.n_features, activation=output_activation, kernel_initializer=seeded(GLOROT, seed, 40), name="output"
        )
        if threshold_net is None:
            net_seed = None if seed is None else seed + 50
            threshold_net = default_threshold_net(self.seq_len, self.latent_dim, seed=net_seed)
        elif not isinstance(threshold_net, keras.Sequential):
            raise TypeError(
                f"threshold_net must be a keras.Sequential of layers applied to the decoder states, "
                f"got {type(threshold_net).__name__}."
            )
        self.threshold_net = threshold_net
        self.threshold_head = keras.layers.Dense(
            self.n_features, kernel_initializer=seeded(GLOROT, seed, 60), name="threshold_head"
        )
        # The decoder's input: the relative position of each step, the same for every window.
        self._positions = np.linspace(0.0, 1.0, self.seq_len, dtype="float32").reshape(1, self.seq_len, 1)

    def call(self, x, training=False):
        _, h_fwd, c_fwd, h_bwd, c_bwd = self.encoder(x, training=training)
        state = [keras.ops.concatenate([h_fwd, h_bwd], axis=-1), keras.ops.concatenate([c_fwd, c_bwd], axis=-1)]
        positions = keras.ops.broadcast_to(self._positions, (keras.ops.shape(x)[0], self.seq_len, 1))
        decoded = self.decoder(positions, initial_state=state, training=training)
        recon = self.output_layer(decoded)
        # The threshold network reads the decoder states but does not shape them (see module docstring).
        states = keras.ops.stop_gradient(decoded)
        threshold_est = self.threshold_head(self.threshold_net(states, training=training))
        return recon, threshold_est

    def spec(self) -> dict[str, Any]:
        """JSON-safe description from which :meth:`from_spec` rebuilds the architecture."""
        net_spec = describe_sequential(self.threshold_net)
        if net_spec["input_shape"] is None:
            net_spec["input_shape"] = [self.seq_len, self.latent_dim]
        return {
            "n_features": self.n_features,
            "seq_len": self.seq_len,
            "latent_dim": self.latent_dim,
            "output_activation": self.output_activation,
            "threshold_net": net_spec,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Seq2Seq":
        """Build (untrained, with built weights) the architecture :meth:`spec` described."""
        model = cls(
            n_features=int(spec["n_features"]),
            seq_len=int(spec["seq_len"]),
            latent_dim=int(spec["latent_dim"]),
            threshold_net=build_sequential(spec["threshold_net"], name="threshold_net"),
            output_activation=spec["output_activation"],
        )
        model(np.zeros((1, model.seq_len, model.n_features), "float32"))
        return model


def seq2seq_loss(x, outputs, loss_fn: Callable = keras.losses.mean_squared_error, beta: float = 1.0):
    """Training loss ``mean loss_fn(x, x̂) + beta · mean (ê − sg[(x − x̂)²])²``.

    ``outputs`` is the model's ``(x_recon, threshold_est)``. The squared error is a fixed target
    for the threshold estimate (``stop_gradient``): the threshold term trains the threshold
    network (and, through its input, the decoder states) but never pulls the reconstruction
    towards errors that are easy to predict rather than small.

    Examples
    --------
    >>> x = np.ones((1, 3, 1), 'float32')
    >>> float(seq2seq_loss(x, (np.zeros_like(x), np.ones_like(x)), beta=0.5))
    1.0
    """
    recon, threshold_est = outputs
    squared_error = keras.ops.square(x - recon)
    threshold_loss = keras.ops.mean(keras.ops.square(threshold_est - keras.ops.stop_gradient(squared_error)))
    return keras.ops.mean(loss_fn(x, recon)) + beta * threshold_loss


class _ReconstructionMetric:
    """Passes only the reconstruction to a user's ``log_metric`` (the model also returns ê)."""

    def __init__(self, metric: keras.metrics.Metric) -> None:
        self.metric = metric

    def update_state(self, y_true, outputs, sample_weight=None):
        return self.metric.update_state(y_true, outputs[0])

    def result(self):
        return self.metric.result()

    def reset_state(self) -> None:
        self.metric.reset_state()


def instance_scores(fscore: np.ndarray, outlier_perc: float = 100.0) -> np.ndarray:
    """The mean of the top ⌈outlier_perc %⌉ feature scores of each instance (first axis); see
    :meth:`OutlierSeq2Seq.instance_score`, which this is, usable without a detector.

    Examples
    --------
    >>> instance_scores(np.array([[1., 2., 3., 10.]]), outlier_perc=50)
    array([6.5], dtype=float32)
    """
    outlier_perc = check_percentile(outlier_perc, "outlier_perc")
    scores = np.asarray(fscore, dtype=np.float32)
    scores = scores.reshape(scores.shape[0], -1)
    n_scores = scores.shape[1]
    k = min(n_scores, max(1, math.ceil(outlier_perc / 100.0 * n_scores)))
    if k == n_scores:
        return scores.mean(axis=1)
    top = np.partition(scores, n_scores - k, axis=1)[:, n_scores - k:]
    return top.mean(axis=1)


def threshold_scores(raw_feature_score: np.ndarray, threshold: float | np.ndarray,
                     outlier_perc: float = 100.0) -> dict[str, np.ndarray]:
    """Scores and flags from raw feature scores and a threshold: the detector's rule, without the model.

    ``raw_feature_score`` is :meth:`OutlierSeq2Seq.score_details`' ``'raw_feature_score'`` (squared
    error minus the learned estimate), for a series ``(n_steps, n_features)`` or windows
    ``(n, seq_len, n_features)``; ``threshold`` is one number or one per feature. So an app can move
    the threshold or ``outlier_perc`` on cached scores and flag exactly what ``predict`` would.

    Returns
    -------
    dict of numpy.ndarray
        ``'feature_score'`` (``raw − threshold``), ``'feature_outlier'`` (``feature_score > 0``),
        ``'instance_score'`` (mean of the top ⌈outlier_perc %⌉ feature scores of each entry of the
        first axis) and ``'instance_outlier'`` (``instance_score > 0``).

    Examples
    --------
    >>> out = threshold_scores(np.array([[0.5, 2.0], [0.1, 0.2]]), [1.0, 1.0], outlier_perc=50)
    >>> out['feature_outlier'].tolist(), out['instance_score'].tolist(), out['instance_outlier'].tolist()
    ([[False, True], [False, False]], [1.0, -0.800000011920929], [True, False])
    """
    threshold = np.asarray(threshold, dtype=np.float32)
    if threshold.ndim > 1 or not np.all(np.isfinite(threshold)):
        raise ValueError("threshold must be one finite number or one per feature.")
    fscore = np.asarray(raw_feature_score, dtype=np.float32) - threshold
    iscore = instance_scores(fscore, outlier_perc)
    return {"feature_score": fscore, "feature_outlier": fscore > 0, "instance_score": iscore,
            "instance_outlier": iscore > 0}


@register_archivable("detector")
class OutlierSeq2Seq(BaseDetector, ThresholdMixin):
    """Seq2Seq time-series outlier detector with a learned, state-dependent threshold.

    Same constructor and methods as alibi-detect's ``OutlierSeq2Seq``; see the module docstring
    for the model and what differs from the reference.

    Parameters
    ----------
    n_features : int
        Number of features in the time series.
    seq_len : int
        Sequence length fed into the Seq2Seq model.
    threshold : float or numpy.ndarray, optional
        Threshold used for outlier detection: one float or one value per feature, added to the
        learned estimate. ``None`` becomes ``0.0`` (with a logged warning), as in the reference;
        :meth:`infer_threshold` adjusts it from data considered normal.
    seq2seq : keras.Model, optional
        A (possibly trained) model returning ``(x_recon, threshold_est)`` for windows
        ``(batch, seq_len, n_features)``, e.g. a :class:`Seq2Seq`. ``fit`` trains it further;
        without ``fit`` it is used as it is, on unscaled data. Only :class:`Seq2Seq` models can
        be saved.
    threshold_net : keras.Sequential, optional
        Layers of the threshold estimation network, used when no ``seq2seq`` is given
        (default :func:`default_threshold_net`). ``fit`` trains a fresh copy of it each time.
    latent_dim : int, optional
        Latent dimension of the encoder and decoder (default :func:`default_latent_dim`).
    output_activation : str, optional
        Activation of the Dense output layer of the decoder.
    beta : float
        Weight of the threshold estimation loss term.

    Attributes
    ----------
    seq2seq_ : keras.Model
        The trained model (after ``fit``).
    scaler_ : Standardizer or None
        Per-feature standardisation fitted on the training series (``None`` when a given
        ``seq2seq`` is used without ``fit``: data are then fed as they are).
    history_ : TrainingHistory
        Losses per epoch and why training stopped.

    Examples
    --------
    >>> t = np.arange(2000) * 0.1
    >>> X = np.stack([np.sin(t), np.cos(0.5 * t)], axis=1)
    >>> od = OutlierSeq2Seq(n_features=2, seq_len=20, latent_dim=16)
    >>> od = od.fit(X, epochs=2, verbose=False, seed=0)
    >>> od.infer_threshold(X, threshold_perc=[95, 95])
    >>> od.threshold.shape
    (2,)
    >>> preds = od.predict(X, outlier_type='feature')
    >>> preds['data']['is_outlier'].shape, preds['data']['instance_score'].shape
    ((2000, 2), (2000,))
    """

    default_data_type = "time-series"

    def __init__(
        self,
        n_features: int,
        seq_len: int,
        threshold: float | np.ndarray | None = None,
        seq2seq: keras.Model | None = None,
        threshold_net: keras.Sequential | None = None,
        latent_dim: int | None = None,
        output_activation: str | None = None,
        beta: float = 1.0,
    ) -> None:
        self.n_features = n_features
        self.seq_len = seq_len
        if threshold is None:
            # As in the reference: the threshold network's estimate is the threshold until one is inferred.
            logger.warning(
                "OutlierSeq2Seq: no threshold given, it defaults to 0.0 (a feature score above the learned "
                "estimate is an outlier); call infer_threshold(X, threshold_perc) to set one from normal data."
            )
            threshold = 0.0
        self.threshold = threshold
        self.seq2seq = seq2seq
        self.threshold_net = threshold_net
        self.latent_dim = latent_dim
        self.output_activation = output_activation
        self.beta = beta
        self._forward_fn = None
        self._forward_model = None

    # ------------------------------------------------------------------ training
    # Learned state: created by fit (None here, at class level, means "not fitted").
    seq2seq_: keras.Model | None = None
    scaler_: Standardizer | None = None
    history_: TrainingHistory | None = None

    def fit(
        self,
        X: np.ndarray,
        loss_fn: Callable = keras.losses.mean_squared_error,
        optimizer: Any = keras.optimizers.Adam,
        epochs: int = 20,
        batch_size: int = 64,
        verbose: bool = True,
        log_metric: tuple[str, keras.metrics.Metric] | None = None,
        callbacks: Any = None,
        *,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        time_budget: float | None = None,
        window_stride: int | None = None,
    ) -> "OutlierSeq2Seq":
        """Train the Seq2Seq model and its threshold network on normal data.

        Parameters
        ----------
        X : numpy.ndarray
            One series ``(n_steps, n_features)`` (cut into windows of ``seq_len``, the ragged end
            covered by a window aligned to the end) or windows ``(n, seq_len, n_features)``.
        loss_fn : callable
            Reconstruction loss ``loss_fn(x, x_recon)``; the threshold term is added to it.
        optimizer : str, keras optimizer class or instance
            Optimizer (default Adam).
        epochs, batch_size : int
            Passes over the windows, and windows per step.
        verbose : bool
            Log the loss after every epoch.
        log_metric : (str, keras.metrics.Metric), optional
            A metric of ``(x, x_recon)`` reported by name.
        callbacks : keras callback or list, optional
            Keras callbacks, honoured as in ``model.fit``.
        seed : int, optional
            Seeds the default networks' weights and the shuffling: same seed, same detector.
        progress : callable, optional
            Receives a :class:`~engine.training.TrainingEvent` after every batch and epoch.
        cancel : CancelToken, optional
            Cancels training at the next batch (nothing half-trained is kept).
        time_budget : float, optional
            Wall-clock seconds after which training stops.
        window_stride : int, optional
            For a 2-D series: steps between the starts of consecutive training windows. The
            default ``seq_len`` cuts the series into disjoint windows (as the reference does); a
            smaller stride gives overlapping windows, i.e. more training windows from a short
            series. Scoring always uses disjoint windows.

        Returns
        -------
        OutlierSeq2Seq
            ``self``, fitted: ``seq2seq_``, ``scaler_`` and ``history_`` are set.

        Raises
        ------
        DataError
            When ``X`` is not numeric and finite, has the wrong number of features, or is
            shorter than one window.

        Examples
        --------
        >>> X = np.sin(np.arange(500) * 0.2)[:, None]
        >>> od = OutlierSeq2Seq(1, 25, latent_dim=8).fit(X, epochs=1, verbose=False, seed=0)
        >>> od.history_.epochs_run
        1
        """
        n_features, seq_len = self._dims()
        X = self._validate(X)
        scaler = Standardizer().fit(X.reshape(-1, n_features))
        if window_stride is not None:
            window_stride = check_positive_int(window_stride, "window_stride")
        windows, _ = self._to_windows(scaler.transform(X.reshape(-1, n_features)).reshape(X.shape), window_stride)

        if self.seq2seq is not None:
            model = self.seq2seq
            self._check_model(model)
        else:
            threshold_net = None
            if self.threshold_net is not None:
                if not isinstance(self.threshold_net, keras.Sequential):
                    raise TypeError(
                        "threshold_net must be a keras.Sequential of layers applied to the decoder states, "
                        f"got {type(self.threshold_net).__name__}."
                    )
                # A fresh copy per fit: refitting forgets, and the caller's network is untouched.
                threshold_net = keras.models.clone_model(self.threshold_net)
            model = Seq2Seq(
                n_features, seq_len, latent_dim=self.latent_dim, threshold_net=threshold_net,
                output_activation=self.output_activation, seed=seed,
            )
            model(windows[:1])

        metric = None if log_metric is None else (log_metric[0], _ReconstructionMetric(log_metric[1]))
        config = TrainingConfig(optimizer=optimizer, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose,
                                log_metric=metric, callbacks=callbacks, progress=progress, cancel=cancel,
                                time_budget=time_budget)
        history = train(model, seq2seq_loss, windows, config=config,
                        loss_kwargs={"loss_fn": loss_fn, "beta": float(self.beta)})
        self.seq2seq_, self.scaler_, self.history_ = model, scaler, history
        self._forward(windows[:1], 1)  # trace the scoring function now, so the first score() after fit is quick
        return self

    # ------------------------------------------------------------------ scores

    def feature_score(self, X_orig: np.ndarray, X_recon: np.ndarray, threshold_est: np.ndarray) -> np.ndarray:
        """Feature-level scores ``(X_orig − X_recon)² − threshold_est − threshold``.

        All three arrays are in the model's (standardised) units and have one shape; the
        threshold (scalar or per feature) broadcasts over the last axis. Above 0 means outlier.

        Examples
        --------
        >>> od = OutlierSeq2Seq(2, 4, threshold=[0.5, 1.0])
        >>> od.feature_score(np.ones((1, 2)), np.zeros((1, 2)), np.full((1, 2), 0.25))
        array([[ 0.25, -0.25]], dtype=float32)
        """
        threshold = self._threshold_array()
        X_orig, X_recon, threshold_est = (np.asarray(a, dtype=np.float32) for a in (X_orig, X_recon, threshold_est))
        return (X_orig - X_recon) ** 2 - threshold_est - threshold

    def instance_score(self, fscore: np.ndarray, outlier_perc: float = 100.0) -> np.ndarray:
        """Instance-level scores: the mean of the top ⌈outlier_perc %⌉ feature scores of each instance.

        An instance is one entry along the first axis: a time step for a 2-D series, a window for
        3-D input. At least one score is always used (``outlier_perc=0`` gives the maximum).

        Examples
        --------
        >>> od = OutlierSeq2Seq(4, 2)
        >>> od.instance_score(np.array([[1., 2., 3., 10.]]), outlier_perc=50)
        array([6.5], dtype=float32)
        """
        return instance_scores(fscore, outlier_perc)

    def score(
        self, X: np.ndarray, outlier_perc: float = 100.0, batch_size: int = int(1e10)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feature- and instance-level outlier scores of ``X``.

        Parameters
        ----------
        X : numpy.ndarray
            A series ``(n_steps, n_features)`` or windows ``(n, seq_len, n_features)``.
        outlier_perc : float
            Percentage of the highest feature scores averaged into the instance score.
        batch_size : int
            Windows per model call (memory stays bounded whatever is given).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Feature scores with the shape of ``X`` and instance scores of shape ``(len(X),)``.
        """
        details = self._details(X, batch_size)
        fscore = details["raw_feature_score"] - self._threshold_array()
        return fscore, self.instance_score(fscore, outlier_perc)

    def infer_threshold(
        self,
        X: np.ndarray,
        outlier_perc: float = 100.0,
        threshold_perc: float | np.ndarray | list = 95.0,
        batch_size: int = int(1e10),
    ) -> None:
        """Raise (or lower) ``threshold`` so that ``threshold_perc`` % of ``X`` counts as normal.

        As in the reference, the update is *additive*: ``X`` is scored with the current threshold
        and the chosen percentile of those scores is added to it, so calling it again on the same
        data leaves the threshold where it is.

        - A scalar ``threshold_perc`` adds one number: with ``outlier_perc=100`` the percentile of
          all feature scores, otherwise the percentile of the instance scores computed with
          ``outlier_perc``. A scalar threshold stays a scalar; a per-feature one stays per feature.
        - A per-feature ``threshold_perc`` (a list or array, one percentage per feature) adds to
          each feature ``f`` the ``threshold_perc[f]`` percentile of its own feature scores, so
          about ``100 − threshold_perc[f]`` % of its steps are flagged; ``threshold`` becomes an
          array of shape ``(n_features,)``. ``outlier_perc`` then only shapes the instance scores.

        Examples
        --------
        >>> X = np.sin(np.arange(400) * 0.3)[:, None]
        >>> od = OutlierSeq2Seq(1, 20, latent_dim=8).fit(X, epochs=1, verbose=False, seed=0)
        >>> od.infer_threshold(X, threshold_perc=90)
        >>> np.ndim(od.threshold)
        0
        >>> od.infer_threshold(X, threshold_perc=[90])
        >>> od.threshold.shape
        (1,)
        """
        n_features, _ = self._dims()
        outlier_perc = check_percentile(outlier_perc, "outlier_perc")
        current = self._threshold_array() if self.threshold is not None else np.float32(0.0)
        fscore, iscore = self.score(X, outlier_perc=outlier_perc, batch_size=batch_size)
        per_feature = fscore.reshape(-1, n_features)
        if np.ndim(threshold_perc) == 0:
            perc = check_percentile(threshold_perc, "threshold_perc")
            scores = per_feature if outlier_perc == 100.0 else iscore
            updated = current + np.float32(self.threshold_at(scores, perc))
            self.threshold = float(updated) if updated.ndim == 0 else updated.astype(np.float32)
            return
        percs = np.asarray(threshold_perc, dtype=np.float64).reshape(-1)
        if percs.size != n_features:
            raise ValueError(
                f"threshold_perc has {percs.size} values but the detector has {n_features} features: "
                "give one percentage, or one per feature."
            )
        delta = np.array([self.threshold_at(per_feature[:, f], p) for f, p in enumerate(percs)],
                         dtype=np.float32)
        self.threshold = (current + delta).astype(np.float32)

    def predict(
        self,
        X: np.ndarray,
        outlier_type: str = "instance",
        outlier_perc: float = 100.0,
        batch_size: int = int(1e10),
        return_feature_score: bool = True,
        return_instance_score: bool = True,
    ) -> dict:
        """Outlier scores and labels at the feature or instance level.

        Parameters
        ----------
        X : numpy.ndarray
            A series ``(n_steps, n_features)`` or windows ``(n, seq_len, n_features)``.
        outlier_type : {'instance', 'feature'}
            Whether ``is_outlier`` flags instances (shape ``(len(X),)``) or every feature of
            every step (shape of ``X``).
        outlier_perc : float
            Percentage of the highest feature scores averaged into the instance score.
        batch_size : int
            Windows per model call.
        return_feature_score, return_instance_score : bool
            Include the scores in the payload (``None`` otherwise).

        Returns
        -------
        dict
            ``{'meta': {...}, 'data': {'instance_score', 'feature_score', 'is_outlier'}}``.

        Raises
        ------
        NotFittedError
            Before ``fit`` (without a given ``seq2seq``) or before a threshold is set.
        """
        if outlier_type not in ("instance", "feature"):
            raise ValueError(f"outlier_type must be 'instance' or 'feature', got {outlier_type!r}.")
        self._require_threshold()
        fscore, iscore = self.score(X, outlier_perc=outlier_perc, batch_size=batch_size)
        is_outlier = fscore > 0 if outlier_type == "feature" else iscore > 0
        meta = dict(self.meta, outlier_type=outlier_type, outlier_perc=float(outlier_perc))
        return outlier_prediction_dict(
            meta,
            is_outlier=is_outlier,
            instance_score=iscore if return_instance_score else None,
            feature_score=fscore if return_feature_score else None,
        )

    # ------------------------------------------------------------------ for plotting

    def score_details(self, X: np.ndarray, outlier_perc: float = 100.0, batch_size: int = int(1e10)) -> dict:
        """Everything a chart of ``X`` needs, from one pass of the model.

        Returns a dict of numpy arrays; per-step arrays have the shape of ``X`` (a 2-D series is
        mapped back to its time steps):

        - ``'reconstruction'``: the model's reconstruction, in the original units;
        - ``'squared_error'``, ``'threshold_estimate'``: ``(x − x̂)²`` and ``ê``, standardised units;
        - ``'raw_feature_score'``: ``squared_error − threshold_estimate``, i.e. the feature score
          before the threshold; re-threshold it without the model:
          ``detector.instance_score(raw − t, outlier_perc)``;
        - ``'feature_score'``, ``'instance_score'``: as :meth:`score` (``None`` without a threshold);
        - ``'window_start'``: first step of every window the model saw (2-D input; for 3-D input
          ``arange(n)``), and ``'window_score'``: the instance score of each whole window
          (``None`` without a threshold), for ranking windows.

        Examples
        --------
        >>> X = np.sin(np.arange(450) * 0.3)[:, None]
        >>> od = OutlierSeq2Seq(1, 20, latent_dim=8).fit(X, epochs=1, verbose=False, seed=0)
        >>> d = od.score_details(X)
        >>> d['reconstruction'].shape, d['window_start'][-2:].tolist()
        ((450, 1), [420, 430])
        """
        details = self._details(X, batch_size, keep_windows=True)
        raw = details.pop("raw_feature_score")
        window_raw = details.pop("window_raw_feature_score")
        out = {
            "reconstruction": details["reconstruction"],
            "squared_error": details["squared_error"],
            "threshold_estimate": details["threshold_estimate"],
            "raw_feature_score": raw,
            "feature_score": None,
            "instance_score": None,
            "window_start": details["window_start"],
            "window_score": None,
        }
        if self.threshold is not None:
            threshold = self._threshold_array()
            out["feature_score"] = raw - threshold
            out["instance_score"] = self.instance_score(out["feature_score"], outlier_perc)
            out["window_score"] = self.instance_score(window_raw - threshold, outlier_perc)
        return out

    def reconstruct(self, X: np.ndarray, batch_size: int = int(1e10)) -> np.ndarray:
        """The model's reconstruction of ``X``, in the original units and with ``X``'s shape.

        Examples
        --------
        >>> X = np.sin(np.arange(300) * 0.3)[:, None]
        >>> od = OutlierSeq2Seq(1, 20, latent_dim=8).fit(X, epochs=1, verbose=False, seed=0)
        >>> od.reconstruct(X).shape
        (300, 1)
        """
        return self._details(X, batch_size)["reconstruction"]

    # ------------------------------------------------------------------ saving (save/load: BaseDetector)

    def _archive_state(self) -> tuple[dict, dict]:
        model = self._model()
        if not isinstance(model, Seq2Seq):
            raise ArchiveError(
                f"only detectors whose model is an engine Seq2Seq can be saved, this one uses a "
                f"{type(model).__name__}."
            )
        threshold = None if self.threshold is None else np.asarray(self.threshold, dtype=np.float64).tolist()
        history = None
        if self.history_ is not None:
            history = {
                "loss": [float(v) for v in self.history_.loss],
                "metrics": {k: [float(v) for v in vals] for k, vals in self.history_.metrics.items()},
                "epochs_run": int(self.history_.epochs_run),
                "stopped": self.history_.stopped,
                "seconds": float(self.history_.seconds),
            }
        config = {
            "n_features": int(self.n_features),
            "seq_len": int(self.seq_len),
            "latent_dim": self.latent_dim if self.latent_dim is None else int(self.latent_dim),
            "output_activation": self.output_activation,
            "beta": float(self.beta),
            "threshold": threshold,
            "model": model.spec(),
            "fitted": self.seq2seq_ is not None,
            "scaled": self.scaler_ is not None,
            "history": history,
        }
        arrays = model_weights("seq2seq", model)
        if self.scaler_ is not None:
            arrays.update(self.scaler_.to_arrays("scaler"))
        return config, arrays

    @classmethod
    def _from_archive(cls, config: dict, arrays: dict) -> "OutlierSeq2Seq":
        model = Seq2Seq.from_spec(config["model"])
        set_model_weights("seq2seq", model, arrays)
        threshold = config["threshold"]
        detector = cls(
            n_features=int(config["n_features"]),
            seq_len=int(config["seq_len"]),
            threshold=0.0 if threshold is None else np.asarray(threshold, dtype=np.float32),
            latent_dim=config["latent_dim"],
            output_activation=config["output_activation"],
            beta=float(config["beta"]),
        )
        if model.n_features != detector.n_features or model.seq_len != detector.seq_len:
            raise ArchiveError("the archived network does not match the detector's n_features / seq_len.")
        if config["fitted"]:
            detector.seq2seq_ = model
        else:
            detector.seq2seq = model
        if config["scaled"]:
            detector.scaler_ = Standardizer.from_arrays("scaler", arrays)
            if detector.scaler_.mean_.shape != (detector.n_features,):
                raise ArchiveError("the archived standardiser does not match the detector's n_features.")
        if config.get("history") is not None:
            h = config["history"]
            detector.history_ = TrainingHistory(
                loss=list(h["loss"]), metrics=dict(h["metrics"]), epochs_run=int(h["epochs_run"]),
                stopped=str(h["stopped"]), seconds=float(h["seconds"]),
            )
        return detector

    # ------------------------------------------------------------------ internals

    def _dims(self) -> tuple[int, int]:
        return check_positive_int(self.n_features, "n_features"), check_positive_int(self.seq_len, "seq_len")

    def _model(self) -> keras.Model:
        model = self.seq2seq_ if self.seq2seq_ is not None else self.seq2seq
        if model is None:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit(X) first (or pass a trained seq2seq model)."
            )
        return model

    def _check_model(self, model: keras.Model) -> None:
        n_features, seq_len = self._dims()
        for attr, want in (("n_features", n_features), ("seq_len", seq_len)):
            have = getattr(model, attr, want)
            if have != want:
                raise ValueError(f"the seq2seq model has {attr}={have} but the detector has {attr}={want}.")

    def _threshold_array(self) -> np.ndarray:
        """The threshold as float32, scalar or ``(n_features,)``, checked."""
        self._require_threshold()
        n_features, _ = self._dims()
        threshold = np.asarray(self.threshold, dtype=np.float32)
        if threshold.ndim > 1 or (threshold.ndim == 1 and threshold.size not in (1, n_features)):
            raise ValueError(
                f"threshold has shape {threshold.shape}; give one number or one per feature ({n_features})."
            )
        if not np.all(np.isfinite(threshold)):
            raise ValueError("threshold contains NaN or inf.")
        return threshold

    def _validate(self, X) -> np.ndarray:
        n_features, seq_len = self._dims()
        X = as_float_array(X, ndim=(2, 3), n_features=n_features)
        if X.ndim == 3 and X.shape[1] != seq_len:
            raise DataError(
                f"X holds windows of {X.shape[1]} steps but the detector was built for seq_len={seq_len}; "
                "pass windows of that length, or one long series of shape (n_steps, n_features)."
            )
        if X.ndim == 2 and X.shape[0] < seq_len:
            raise DataError(
                f"X has {X.shape[0]} time steps, too short for one window of seq_len={seq_len}; "
                f"pass at least {seq_len} steps or use a smaller seq_len."
            )
        return X

    def _to_windows(self, X: np.ndarray, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``(n_windows, seq_len, n_features)`` and the first step of each.

        A 2-D series is cut into consecutive windows; a ragged end gets one more window aligned
        to the end of the series, overlapping the one before. With a ``stride`` other than
        ``seq_len`` (training only) windows start every ``stride`` steps, plus one at the end.
        """
        if X.ndim == 3:
            return X, np.arange(len(X))
        seq_len = int(self.seq_len)
        n_steps, n_features = X.shape
        if stride is not None and stride != seq_len:
            starts = np.arange(0, n_steps - seq_len + 1, stride)
            if starts[-1] != n_steps - seq_len:
                starts = np.append(starts, n_steps - seq_len)
            return np.stack([X[s:s + seq_len] for s in starts]), starts
        n_full = n_steps // seq_len
        windows = X[: n_full * seq_len].reshape(n_full, seq_len, n_features)
        starts = np.arange(n_full) * seq_len
        if n_full * seq_len < n_steps:
            windows = np.concatenate([windows, X[None, n_steps - seq_len:]], axis=0)
            starts = np.append(starts, n_steps - seq_len)
        return windows, starts

    @staticmethod
    def _from_windows(values: np.ndarray, n_steps: int) -> np.ndarray:
        """Per-step values of a 2-D series from per-window values made by :meth:`_to_windows`."""
        seq_len, n_features = values.shape[1:]
        n_full = n_steps // seq_len
        steps = values[:n_full].reshape(n_full * seq_len, n_features)
        rest = n_steps - n_full * seq_len
        if rest:
            steps = np.concatenate([steps, values[-1, seq_len - rest:]], axis=0)
        return steps

    def _forward(self, windows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x_recon, threshold_est)`` for standardised windows, in bounded-memory chunks."""
        model = self._model()
        if self._forward_model is not model:
            n_features, seq_len = self._dims()
            spec = tf.TensorSpec((None, seq_len, n_features), tf.float32)
            self._forward_fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
            self._forward_model = model
        width = int(getattr(model, "latent_dim", 0) or 0) + 4 * windows.shape[2]
        cap = max(1, MAX_FLOATS_PER_STEP // (windows.shape[1] * width))
        try:
            step = max(1, min(int(batch_size), cap))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.") from exc
        recon, threshold_est = [], []
        for start in range(0, len(windows), step):
            r, t = self._forward_fn(tf.constant(windows[start:start + step]))
            recon.append(r.numpy())
            threshold_est.append(t.numpy())
        return np.concatenate(recon), np.concatenate(threshold_est)

    def _details(self, X, batch_size: int, keep_windows: bool = False) -> dict:
        X = self._validate(X)
        self._model()
        n_features = X.shape[-1]
        scaled = X if self.scaler_ is None else self.scaler_.transform(X.reshape(-1, n_features)).reshape(X.shape)
        windows, starts = self._to_windows(scaled)
        recon, threshold_est = self._forward(windows, batch_size)
        squared_error = (windows - recon) ** 2
        window_raw = squared_error - threshold_est
        if X.ndim == 2:
            recon, squared_error, threshold_est, raw = (
                self._from_windows(a, len(X)) for a in (recon, squared_error, threshold_est, window_raw)
            )
        else:
            raw = window_raw
        if self.scaler_ is not None:
            recon = self.scaler_.inverse_transform(recon.reshape(-1, n_features)).reshape(recon.shape)
        details = {
            "reconstruction": recon,
            "squared_error": squared_error,
            "threshold_estimate": threshold_est,
            "raw_feature_score": raw,
            "window_start": starts,
        }
        if keep_windows:
            details["window_raw_feature_score"] = window_raw
        return details
