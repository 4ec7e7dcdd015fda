"""Autoencoding Gaussian Mixture Model (AEGMM) outlier detector for tabular data.

The model (Zong et al., "Deep Autoencoding Gaussian Mixture Model for Unsupervised Anomaly
Detection", ICLR 2018):

1. an encoder maps a row ``x`` to a low-dimensional code ``z_c``; a decoder reconstructs ``x̂``;
2. reconstruction features ``f(x, x̂)`` (by default the relative Euclidean distance and the cosine
   similarity, :func:`eucl_cosim_features`) are joined to the code: ``z = [z_c, f(x, x̂)]``;
3. a softmax network maps ``z`` to memberships ``γ`` of ``n_gmm`` Gaussian components, from which
   the mixture's weights, means and covariances follow (:mod:`engine.od.gmm`);
4. the outlier score is the *sample energy* ``E(z) = −log Σ_k φ_k N(z | μ_k, Σ_k)``.

Training minimises ``mean‖x − x̂‖² + w_energy · mean E(z) + w_cov_diag · Σ_k Σ_d 1/Σ_k,dd`` with
mixture parameters estimated per batch. After training the parameters are re-estimated over the
whole training set in bounded-memory batches and stored as ``gmm_params_``.

Differences from the reference implementation (alibi-detect), on purpose:

- the relative distance feature divides by ``min(‖x‖, ‖x̂‖)`` floored at a small positive value
  (the reference adds ``ε = −1`` to that denominator by accident and gets NaN scores in about half
  of its runs);
- the energy is computed in float64 and covariances are factorised with a jitter that grows
  until the Cholesky factorisation succeeds; a run whose final scores are not finite raises
  :class:`~engine.errors.TrainingDivergedError` instead of returning NaN scores;
- default networks are built from the data's width when none are given, and a
  :class:`~engine.preprocessing.Standardizer` fitted on the training data is stored with the
  detector, so raw columns can be fed to ``score``/``predict``;
- scoring is compiled (``tf.function``) and batched with bounded memory;
- :meth:`OutlierAEGMM.feature_reconstruction_error` shows which features make a row unusual.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from engine.base import BaseDetector, ThresholdMixin, check_is_fitted, outlier_prediction_dict
from engine.errors import ArchiveError, DataError, NotFittedError, TrainingDivergedError
from engine.nets import build_sequential, describe_sequential, mlp
from engine.od import gmm
from engine.preprocessing import Standardizer
from engine.saving import model_weights, register_archivable, set_model_weights
from engine.training import CancelToken, ProgressFn, TrainingConfig, TrainingHistory, train
from engine.validation import as_float_array

# Rows per compiled scoring step, whatever batch_size the caller asks for: bounds memory.
MAX_ROWS_PER_STEP = 65_536
# Whole chunks of this many rows (when batch_size allows) are scored by one XLA-compiled float32 program,
# compiled once per detector on the first such chunk (about 0.3 s); the rows after the last whole chunk, and
# smaller calls, use the plain graph, which needs no compilation.
FAST_ROWS = 32_768
# Floor under norms in the reconstruction features (keeps them and their gradients finite).
_NORM_EPS = 1e-12


def eucl_cosim_features(x: tf.Tensor, y: tf.Tensor, max_eucl: float = 1e2) -> tf.Tensor:
    """Relative Euclidean distance and cosine similarity between rows of ``x`` and ``y``.

    ``[min(‖x − y‖ / min(‖x‖, ‖y‖), max_eucl), ⟨x, y⟩ / (‖x‖ ‖y‖)]`` per row. The distance is
    relative to the *smaller* of the two norms, so a row far outside the training data (whose
    reconstruction stays bounded) gets a large value, not ≈ 1. Every norm is floored at ``1e-6``:
    an all-zero row gives finite values and finite gradients. (The reference means to add a small
    ``eps`` to the denominator but passes ``eps = −1``, which gives negative or infinite distances
    for rows with norms near 1 and NaN scores in about half of its runs.)

    Parameters
    ----------
    x, y : tensor (N, ...)
        Instances and their reconstructions; trailing axes are flattened.
    max_eucl : float
        Upper bound of the relative distance.

    Returns
    -------
    tensor (N, 2), float32

    Examples
    --------
    >>> x = tf.constant([[3., 4.]]); y = tf.constant([[3., 4.]])
    >>> eucl_cosim_features(x, y).numpy().round(4).tolist()
    [[0.0, 1.0]]
    """
    x = tf.cast(tf.reshape(x, (tf.shape(x)[0], -1)), tf.float32)
    y = tf.cast(tf.reshape(y, (tf.shape(y)[0], -1)), tf.float32)
    norm_x = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(x), axis=-1), _NORM_EPS))
    norm_y = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(y), axis=-1), _NORM_EPS))
    norm_diff = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(x - y), axis=-1), _NORM_EPS))
    rel_eucl = tf.minimum(norm_diff / tf.minimum(norm_x, norm_y), max_eucl)
    cos_sim = tf.reduce_sum(x * y, axis=-1) / (norm_x * norm_y)
    return tf.stack([rel_eucl, cos_sim], axis=-1)


class AEGMM(keras.Model):
    """The AEGMM network: encoder, decoder, reconstruction features and GMM membership network.

    ``model(x)`` returns ``(x_recon, z, gamma)``: the reconstruction, the joint latent
    ``z = [code, recon_features(x, x_recon)]`` and the soft memberships.

    Examples
    --------
    >>> enc, dec, dens = default_networks(4, n_gmm=2, seed=0)
    >>> x_recon, z, gamma = AEGMM(enc, dec, dens, n_gmm=2)(np.zeros((3, 4), 'float32'))
    >>> tuple(x_recon.shape), tuple(z.shape), tuple(gamma.shape)
    ((3, 4), (3, 3), (3, 2))
    """

    def __init__(
        self,
        encoder_net: keras.Model,
        decoder_net: keras.Model,
        gmm_density_net: keras.Model,
        n_gmm: int,
        recon_features: Callable = eucl_cosim_features,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder_net
        self.decoder = decoder_net
        self.gmm_density = gmm_density_net
        self.n_gmm = int(n_gmm)
        self.recon_features = recon_features

    def reconstruct_and_latent(self, x, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """``(x_recon, z)`` without the membership network (all that scoring needs)."""
        code = self.encoder(x, training=training)
        x_recon = self.decoder(code, training=training)
        code = tf.reshape(code, (tf.shape(code)[0], -1))
        features = tf.cast(self.recon_features(x, x_recon), code.dtype)
        return x_recon, tf.concat([code, features], axis=-1)

    def call(self, x, training: bool = False):
        x_recon, z = self.reconstruct_and_latent(x, training=training)
        gamma = self.gmm_density(z, training=training)
        return x_recon, z, gamma


def loss_aegmm(
    x_true: tf.Tensor,
    x_pred: tf.Tensor,
    z: tf.Tensor,
    gamma: tf.Tensor,
    w_energy: float = 0.1,
    w_cov_diag: float = 0.005,
) -> tf.Tensor:
    """AEGMM loss: reconstruction MSE + ``w_energy`` · mean energy + ``w_cov_diag`` · Σ 1/diag(cov).

    The mixture parameters are those of the batch (from ``z`` and ``gamma``); the energy and the
    penalty are computed in float64 on the jittered covariance actually factorised (so a feature
    that is constant over a batch gives a large but finite penalty, not inf); the total is returned
    as a float32 scalar.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(8, 3)).astype('float32')
    >>> z = rng.normal(size=(8, 2)).astype('float32')
    >>> gamma = np.full((8, 2), 0.5, 'float32')
    >>> bool(np.isfinite(loss_aegmm(x, x, z, gamma).numpy()))
    True
    """
    x_true = tf.cast(x_true, tf.float32)
    x_pred = tf.cast(x_pred, tf.float32)
    recon = tf.reduce_mean(tf.square(x_true - x_pred))
    phi, mu, cov = gmm.gmm_params(z, gamma)
    chol, jitter = gmm.cholesky_with_jitter(cov)
    energy = tf.reduce_mean(gmm.sample_energy(z, phi, mu, chol))
    penalty = gmm.cov_diag_penalty(cov, jitter)
    total = tf.cast(recon, gmm.DTYPE) + w_energy * energy + w_cov_diag * penalty
    return tf.cast(total, tf.float32)


def default_hidden_units(n_features: int) -> tuple[list[int], int]:
    """Hidden widths and code size of the default encoder for ``n_features`` inputs.

    Widths ``[h, h/2, h/6]`` with ``h = clip(3·n_features, 16, 128)`` (floors 8 and 4), and a code
    of ``clip(ceil(n_features / 20), 1, 4)`` units: 18 features give ``[54, 27, 9] → 1``.

    Examples
    --------
    >>> default_hidden_units(18)
    ([54, 27, 9], 1)
    """
    width = int(np.clip(3 * n_features, 16, 128))
    hidden = [width, max(width // 2, 8), max(width // 6, 4)]
    latent_dim = int(np.clip(math.ceil(n_features / 20), 1, 4))
    return hidden, latent_dim


def _layer_seed(seed: int | None, offset: int) -> int | None:
    return None if seed is None else int(seed) * 1000 + offset


def default_encoder(n_features: int, seed: int | None = None) -> keras.Sequential:
    """``n_features → h → h/2 → h/6`` (tanh) ``→ code`` (linear); see :func:`default_hidden_units`."""
    hidden, latent_dim = default_hidden_units(n_features)
    return mlp(n_features, hidden, latent_dim, activation="tanh", seed=_layer_seed(seed, 0), name="encoder")


def default_decoder(code_dim: int, n_features: int, seed: int | None = None) -> keras.Sequential:
    """The encoder's mirror image: ``code → h/6 → h/2 → h`` (tanh) ``→ n_features`` (linear)."""
    hidden, _ = default_hidden_units(n_features)
    return mlp(code_dim, hidden[::-1], n_features, activation="tanh", seed=_layer_seed(seed, 100), name="decoder")


def default_gmm_density(n_inputs: int, n_gmm: int = 2, seed: int | None = None) -> keras.Sequential:
    """``z → 10`` (tanh) ``→ n_gmm`` (softmax): the mixture membership network."""
    return mlp(n_inputs, [10], n_gmm, activation="tanh", output_activation="softmax", seed=_layer_seed(seed, 200),
               name="gmm_density")


def default_networks(
    n_features: int, n_gmm: int = 2, seed: int | None = None, *, n_recon_features: int = 2
) -> tuple[keras.Sequential, keras.Sequential, keras.Sequential]:
    """The networks built when the user gives none.

    - encoder: ``n_features → h → h/2 → h/6`` (tanh) ``→ code`` (linear), see :func:`default_hidden_units`;
    - decoder: the mirror image, ``code → h/6 → h/2 → h`` (tanh) ``→ n_features`` (linear);
    - GMM membership network: ``code + n_recon_features → 10`` (tanh) ``→ n_gmm`` (softmax).

    Weights are initialised from ``seed`` without touching global random state.

    Examples
    --------
    >>> enc, dec, dens = default_networks(18, n_gmm=2, seed=0)
    >>> enc.output_shape, dec.output_shape, dens.output_shape
    ((None, 1), (None, 18), (None, 2))
    """
    _, latent_dim = default_hidden_units(n_features)
    return (
        default_encoder(n_features, seed),
        default_decoder(latent_dim, n_features, seed),
        default_gmm_density(latent_dim + n_recon_features, n_gmm, seed),
    )


class _OnReconstruction:
    """Adapts a Keras metric to the AEGMM's tuple output: it is updated with ``(x, x_recon)``."""

    def __init__(self, metric: keras.metrics.Metric) -> None:
        self.metric = metric

    def update_state(self, target, outputs, sample_weight=None):
        return self.metric.update_state(target, outputs[0], sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self) -> None:
        self.metric.reset_state()


def _accepted_kwargs(fn: Callable, candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that ``fn`` accepts as keyword arguments."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(candidates)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(candidates)
    return {k: v for k, v in candidates.items() if k in params}


def _rows_per_step(batch_size: int, n_rows: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(max(1, min(batch_size, MAX_ROWS_PER_STEP, n_rows)))


@register_archivable("detector")
class OutlierAEGMM(BaseDetector, ThresholdMixin):
    """Tabular outlier detector: autoencoder + Gaussian mixture energy.

    Parameters
    ----------
    threshold : float, optional
        Energy above which an instance is an outlier; set it later with :meth:`infer_threshold`.
    aegmm : keras.Model, optional
        A full network returning ``(x_recon, z, gamma)`` (e.g. an :class:`AEGMM`); when given, the
        three networks below are ignored.
    encoder_net, decoder_net, gmm_density_net : keras.Model, optional
        The parts of the network. Any part left out is built by :meth:`fit` from the data's width
        (see :func:`default_networks`).
    n_gmm : int, optional
        Number of mixture components; 2 by default, or the output width of ``gmm_density_net``.
    recon_features : callable
        ``f(x, x_recon) -> (N, F)`` features joined to the code; :func:`eucl_cosim_features` by
        default (only the default can be saved in an archive).
    data_type : str, optional
        'tabular', 'image' or 'time-series'; reported in ``meta``.

    Attributes
    ----------
    aegmm_ : AEGMM
        The trained network.
    gmm_params_ : dict of numpy arrays
        ``phi`` (K,), ``mu`` (K, D), ``cov`` (K, D, D) and its Cholesky factor ``cholesky``,
        estimated over the whole training set (float64).
    scaler_ : Standardizer or None
        Fitted on the training data when ``fit(..., standardize=True)``; applied by every method.
    history_ : TrainingHistory
        Per-epoch losses and why training stopped.
    n_features_in_ : int
        Number of columns seen in ``fit``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 6)).astype('float32')
    >>> od = OutlierAEGMM().fit(X, epochs=2, batch_size=128, verbose=False, seed=0)
    >>> od.infer_threshold(X, threshold_perc=95)
    >>> od.predict(X[:3])['data']['is_outlier'].shape
    (3,)
    """

    detector_type = "outlier"
    default_data_type = None

    def __init__(
        self,
        threshold: float | None = None,
        aegmm: keras.Model | None = None,
        encoder_net: keras.Model | None = None,
        decoder_net: keras.Model | None = None,
        gmm_density_net: keras.Model | None = None,
        n_gmm: int | None = None,
        recon_features: Callable = eucl_cosim_features,
        data_type: str | None = None,
    ) -> None:
        self.threshold = threshold
        self.aegmm = aegmm
        self.encoder_net = encoder_net
        self.decoder_net = decoder_net
        self.gmm_density_net = gmm_density_net
        self.n_gmm = n_gmm
        self.recon_features = recon_features
        self.data_type = data_type
        self._compiled: dict[str, Callable] = {}

    # ------------------------------------------------------------------ fitting
    # Learned state: created by fit (None here, at class level, means "not fitted").
    aegmm_: keras.Model | None = None
    gmm_params_: dict[str, np.ndarray] | None = None
    scaler_: Standardizer | None = None
    history_: TrainingHistory | None = None
    n_features_in_: int | None = None

    def _forget_fit(self) -> None:
        self.aegmm_ = self.gmm_params_ = self.scaler_ = self.history_ = self.n_features_in_ = None
        self._compiled = {}

    def fit(
        self,
        X: np.ndarray,
        loss_fn: Callable = loss_aegmm,
        w_energy: float = 0.1,
        w_cov_diag: float = 0.005,
        optimizer: Any = "adam",
        epochs: int = 20,
        batch_size: int = 64,
        verbose: bool = True,
        log_metric: tuple[str, keras.metrics.Metric] | None = None,
        callbacks: keras.callbacks.Callback | list | None = None,
        *,
        seed: int | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        time_budget: float | None = None,
        standardize: bool = True,
    ) -> "OutlierAEGMM":
        """Train the network on (mostly normal) data and estimate the mixture over all of it.

        Parameters
        ----------
        X : array (N, F)
            Training rows, raw units when ``standardize=True``.
        loss_fn : callable
            ``loss_fn(x_true, x_pred, z, gamma, **kw)``; :func:`loss_aegmm` by default. ``w_energy``
            and ``w_cov_diag`` are passed when the function accepts them.
        w_energy, w_cov_diag : float
            Weights of the energy and covariance-diagonal terms of the loss.
        optimizer : str, keras optimizer class or instance
            Adam (learning rate 1e-3) by default.
        epochs, batch_size : int
            Passes over the data and rows per training step.
        verbose : bool
            Log the loss after every epoch.
        log_metric : (str, keras.metrics.Metric), optional
            A metric of ``(x, x_recon)`` reported during training.
        callbacks : keras callback or list, optional
            Honoured as in ``model.fit`` (e.g. ``EarlyStopping``, ``model.stop_training``).
        seed : int, optional
            Seeds the default networks' weights and the shuffling (no global seeding).
        progress : callable, optional
            Receives a :class:`~engine.training.TrainingEvent` after every batch and epoch.
        cancel : CancelToken, optional
            Cancelling raises :class:`~engine.errors.TrainingCancelled`; the detector is left unfitted.
        time_budget : float, optional
            Stop training after this many seconds (the mixture is still estimated).
        standardize : bool
            Fit a :class:`~engine.preprocessing.Standardizer` on ``X`` and apply it everywhere.

        Returns
        -------
        OutlierAEGMM
            ``self``, fitted.

        Raises
        ------
        DataError
            ``X`` is empty, not 2-D, non-numeric or has NaN/inf.
        TrainingDivergedError
            The loss or the final scores are not finite.
        """
        X = as_float_array(X, ndim=2, min_rows=2)
        self._forget_fit()
        n_features = int(X.shape[1])
        scaler = Standardizer().fit(X) if standardize else None
        X_train = scaler.transform(X) if scaler is not None else X
        net = self._network_for(n_features, seed)

        def aegmm_loss(target, outputs, **kwargs):
            x_recon, z, gamma = outputs
            return loss_fn(target, x_recon, z, gamma, **kwargs)

        metric = None if log_metric is None else (log_metric[0], _OnReconstruction(log_metric[1]))
        config = TrainingConfig(optimizer=optimizer, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose,
                                log_metric=metric, callbacks=callbacks, progress=progress, cancel=cancel,
                                time_budget=time_budget)
        history = train(net, aegmm_loss, X_train, config=config,
                        loss_kwargs=_accepted_kwargs(loss_fn, {"w_energy": w_energy, "w_cov_diag": w_cov_diag}))
        compiled = _compile(net, n_features, scaler)
        params = _estimate_mixture(compiled, X)
        if not all(np.isfinite(v).all() for v in params.values()):
            raise TrainingDivergedError(
                "training diverged: the Gaussian mixture estimated after training is not finite. Lower the "
                "learning rate, raise w_cov_diag, or standardise the features."
            )
        # On large training sets this compiles the XLA scoring program here, in training, rather than in the
        # first scoring call after it.
        train_scores = _energies(compiled, params, X, MAX_ROWS_PER_STEP)
        if not np.isfinite(train_scores).all():
            raise TrainingDivergedError(
                f"training diverged: {int((~np.isfinite(train_scores)).sum())} training scores are not finite. "
                "Lower the learning rate, raise w_cov_diag, or standardise the features."
            )
        self.aegmm_, self.gmm_params_, self.scaler_ = net, params, scaler
        self.history_, self.n_features_in_, self._compiled = history, n_features, compiled
        return self

    def _network_for(self, n_features: int, seed: int | None) -> keras.Model:
        """The network to train: the user's ``aegmm``, or one assembled from given and default parts."""
        if self.aegmm is not None:
            if not isinstance(self.aegmm, keras.Model):
                raise TypeError("aegmm must be a keras.Model returning (x_recon, z, gamma), "
                                f"got {type(self.aegmm).__name__}.")
            _check_accepts(self.aegmm, n_features, "aegmm")
            return self.aegmm
        encoder = self.encoder_net if self.encoder_net is not None else default_encoder(n_features, seed)
        code = _check_accepts(encoder, n_features, "encoder_net")
        code_dim = int(np.prod(code.shape[1:]))
        decoder = self.decoder_net if self.decoder_net is not None else default_decoder(code_dim, n_features, seed)
        recon = decoder(code)
        if tuple(recon.shape[1:]) != (n_features,):
            raise ValueError(f"decoder_net outputs shape {tuple(recon.shape[1:])}; it must reconstruct the "
                             f"{n_features} input features.")
        n_recon = int(self.recon_features(tf.zeros((1, n_features)), tf.ones((1, n_features))).shape[-1])
        if self.gmm_density_net is not None:
            density = self.gmm_density_net
            n_gmm = int(_check_accepts(density, code_dim + n_recon, "gmm_density_net").shape[-1])
            if self.n_gmm is not None and int(self.n_gmm) != n_gmm:
                raise ValueError(f"n_gmm={self.n_gmm} but gmm_density_net outputs {n_gmm} memberships.")
        else:
            n_gmm = int(self.n_gmm) if self.n_gmm is not None else 2
            if n_gmm < 1:
                raise ValueError(f"n_gmm must be at least 1, got {self.n_gmm}.")
            density = default_gmm_density(code_dim + n_recon, n_gmm, seed)
        return AEGMM(encoder, decoder, density, n_gmm=n_gmm, recon_features=self.recon_features)

    # ------------------------------------------------------------------ scoring
    def _checked(self, X, batch_size: int) -> tuple[np.ndarray, int]:
        """``X`` validated against the fitted width, and the rows per compiled step."""
        check_is_fitted(self, ("aegmm_", "gmm_params_"))
        X = as_float_array(X, ndim=2, n_features=self.n_features_in_)
        return X, _rows_per_step(batch_size, len(X))

    def score(self, X: np.ndarray, batch_size: int = int(1e10)) -> np.ndarray:
        """Sample energy of every row (higher = more unusual).

        Whole chunks of ``FAST_ROWS`` (32,768) rows, where ``batch_size`` allows them, run one
        XLA-compiled float32 program (compiled on the first such chunk); the other rows run the
        float64 graph. The two agree to about 1e-6 relative.

        Parameters
        ----------
        X : array (N, F)
            Rows in the units ``fit`` saw (raw units when it standardised).
        batch_size : int
            Rows per compiled step, capped at ``MAX_ROWS_PER_STEP`` (65,536) to bound memory.

        Returns
        -------
        numpy.ndarray (N,), float64
        """
        X, step = self._checked(X, batch_size)
        return _energies(self._compiled, self.gmm_params_, X, step)

    def infer_threshold(self, X: np.ndarray, threshold_perc: float = 95.0, batch_size: int = int(1e10)) -> None:
        """Set ``threshold`` to the ``threshold_perc`` percentile of the scores of ``X``.

        ``threshold_perc`` is the percentage of ``X`` considered normal.

        Examples
        --------
        >>> od.infer_threshold(X_normal, threshold_perc=99)  # doctest: +SKIP
        """
        self.threshold = self.threshold_at(self.score(X, batch_size=batch_size), threshold_perc)

    def predict(self, X: np.ndarray, batch_size: int = int(1e10), return_instance_score: bool = True) -> dict:
        """Scores and outlier flags: ``{'meta', 'data': {'instance_score', 'feature_score', 'is_outlier'}}``.

        ``is_outlier`` is ``instance_score > threshold`` as 0/1 ints; ``feature_score`` is None
        (see :meth:`feature_reconstruction_error`); ``instance_score`` is None when
        ``return_instance_score`` is False.

        Raises
        ------
        NotFittedError
            Before ``fit`` or before a threshold is set.
        """
        check_is_fitted(self, ("aegmm_", "gmm_params_"))
        self._require_threshold()
        scores = self.score(X, batch_size=batch_size)
        return outlier_prediction_dict(
            self.meta,
            is_outlier=scores > self.threshold,
            instance_score=scores if return_instance_score else None,
        )

    def reconstruct(self, X: np.ndarray, batch_size: int = int(1e10)) -> np.ndarray:
        """The autoencoder's reconstruction of ``X``, in the units of ``X``."""
        X, step = self._checked(X, batch_size)
        return _batched(self._compiled["reconstruct"], X, step)

    def feature_reconstruction_error(self, X: np.ndarray, batch_size: int = int(1e10)) -> np.ndarray:
        """Per-feature squared reconstruction error ``(x − x̂)²`` in standardised units, (N, F).

        Shows *why* a row is unusual: its large entries are the features the autoencoder could
        not reproduce. (In the units of ``X`` when ``fit`` did not standardise.)

        Examples
        --------
        >>> err = od.feature_reconstruction_error(X[:1])  # doctest: +SKIP
        >>> feature_names[err[0].argmax()]  # doctest: +SKIP
        """
        X, step = self._checked(X, batch_size)
        return _batched(self._compiled["squared_error"], X, step)

    # ------------------------------------------------------------------ archives (save/load: BaseDetector)
    def _archive_state(self) -> tuple[dict, dict]:
        if self.aegmm_ is None or self.gmm_params_ is None:
            raise NotFittedError("OutlierAEGMM is not fitted: call fit(X) before saving.")
        net = self.aegmm_
        if not isinstance(net, AEGMM):
            raise ArchiveError("only AEGMM networks made of keras.Sequential parts can be saved; "
                               f"got a {type(net).__name__}.")
        if net.recon_features is not eucl_cosim_features:
            raise ArchiveError("a detector with custom recon_features cannot be saved; only "
                               "eucl_cosim_features can be restored from an archive.")
        parts = {"encoder": net.encoder, "decoder": net.decoder, "gmm_density": net.gmm_density}
        history = self.history_
        config = {
            "threshold": None if self.threshold is None else float(self.threshold),
            "n_gmm": int(net.n_gmm),
            "data_type": self.data_type,
            "n_features": int(self.n_features_in_),
            "standardize": self.scaler_ is not None,
            "default_networks": self.aegmm is None and self.encoder_net is None
            and self.decoder_net is None and self.gmm_density_net is None,
            "networks": {name: describe_sequential(part) for name, part in parts.items()},
            "recon_features": "eucl_cosim_features",
            "history": None if history is None else {
                "loss": [float(v) for v in history.loss],
                "metrics": {k: [float(v) for v in vals] for k, vals in history.metrics.items()},
                "epochs_run": int(history.epochs_run),
                "stopped": history.stopped,
                "seconds": float(history.seconds),
            },
        }
        arrays: dict[str, np.ndarray] = {}
        for name, part in parts.items():
            arrays.update(model_weights(name, part))
        for key, value in self.gmm_params_.items():
            arrays[f"gmm/{key}"] = np.asarray(value, dtype=np.float64)
        if self.scaler_ is not None:
            arrays.update(self.scaler_.to_arrays("scaler"))
        return config, arrays

    @classmethod
    def _from_archive(cls, config: dict, arrays: dict) -> "OutlierAEGMM":
        if config.get("recon_features") != "eucl_cosim_features":
            raise ArchiveError(f"unknown recon_features {config.get('recon_features')!r} in the archive.")
        parts = {}
        for name in ("encoder", "decoder", "gmm_density"):
            parts[name] = build_sequential(config["networks"][name], name=name)
            set_model_weights(name, parts[name], arrays)
        n_features = int(config["n_features"])
        net = AEGMM(parts["encoder"], parts["decoder"], parts["gmm_density"], n_gmm=int(config["n_gmm"]))
        net(np.zeros((1, n_features), np.float32))
        threshold = config.get("threshold")
        if config.get("default_networks"):
            detector = cls(threshold=threshold, n_gmm=None, data_type=config.get("data_type"))
        else:
            detector = cls(threshold=threshold, encoder_net=parts["encoder"], decoder_net=parts["decoder"],
                           gmm_density_net=parts["gmm_density"], n_gmm=int(config["n_gmm"]),
                           data_type=config.get("data_type"))
        params = {key: np.asarray(arrays[f"gmm/{key}"], dtype=np.float64) for key in ("phi", "mu", "cov", "cholesky")}
        k, d = params["mu"].shape
        if params["phi"].shape != (k,) or params["cov"].shape != (k, d, d) or params["cholesky"].shape != (k, d, d):
            raise ArchiveError("the archive's Gaussian mixture arrays have inconsistent shapes.")
        if k != net.n_gmm or d != int(net.gmm_density.input_shape[-1]):
            raise ArchiveError("the archive's Gaussian mixture does not fit its networks.")
        detector.aegmm_ = net
        detector.gmm_params_ = params
        detector.scaler_ = Standardizer.from_arrays("scaler", arrays) if config.get("standardize") else None
        if detector.scaler_ is not None and detector.scaler_.mean_.shape != (n_features,):
            raise ArchiveError("the archive's scaler does not match its number of features.")
        history = config.get("history")
        detector.history_ = None if history is None else TrainingHistory(**history)
        detector.n_features_in_ = n_features
        detector._compiled = _compile(net, n_features, detector.scaler_)
        return detector


# ---------------------------------------------------------------------- helpers
def _check_accepts(net: keras.Model, width: int, name: str):
    """Call ``net`` on one zero row of ``width`` features, turning a shape error into a clear message."""
    try:
        out = net(tf.zeros((1, width)), training=False)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as exc:
        raise DataError(f"{name} does not accept rows of {width} features ({exc}); build it for the data's "
                        "number of columns.") from exc
    return out


def _param_tensors(params: dict[str, np.ndarray]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    return (tf.constant(params["phi"], gmm.DTYPE), tf.constant(params["mu"], gmm.DTYPE),
            tf.constant(params["cholesky"], gmm.DTYPE))


def _latent(net: keras.Model, x):
    """``(x_recon, z)``; an :class:`AEGMM` skips its membership network."""
    if isinstance(net, AEGMM):
        return net.reconstruct_and_latent(x, training=False)
    outputs = net(x, training=False)
    return outputs[0], outputs[1]


def _latent_and_memberships(net: keras.Model, x):
    """``(z, gamma)`` in one forward pass."""
    _, z, gamma = net(x, training=False)
    return z, gamma


def _compile(net: keras.Model, n_features: int, scaler: Standardizer | None) -> dict[str, Callable]:
    """Compiled per-batch functions of a trained network, taking rows in the units ``fit`` saw.

    The scaler is applied inside the graph (one pass over the data instead of three in numpy);
    the batch axis is free, so each function is traced once.
    """
    rows = tf.TensorSpec([None, n_features], tf.float32)
    vec, mat, cube = (tf.TensorSpec([None] * r, gmm.DTYPE) for r in (1, 2, 3))
    if scaler is not None:
        mean = tf.constant(scaler.mean_, tf.float32)
        scale = tf.constant(scaler.scale_, tf.float32)
        standardize = lambda x: (x - mean) / scale  # noqa: E731
    else:
        standardize = tf.identity

    @tf.function(input_signature=[rows, vec, mat, cube])
    def energy(x, phi, mu, chol):
        _, z = _latent(net, standardize(x))
        return gmm.sample_energy(z, phi, mu, chol)

    @tf.function(input_signature=[rows, *(tf.TensorSpec([None] * r, tf.float32) for r in (3, 2, 1))],
                 jit_compile=True)
    def fast_energy(x, whiten, mu, offset):
        _, z = _latent(net, standardize(x))
        return gmm.sample_energy_whitened(z, whiten, mu, offset)

    @tf.function(input_signature=[rows, tf.TensorSpec([None], tf.float32)])
    def statistics(x, shift):
        z, gamma = _latent_and_memberships(net, standardize(x))
        return gmm.sufficient_statistics(z, gamma, shift)

    @tf.function(input_signature=[rows])
    def squared_error(x):
        x = standardize(x)
        return tf.square(x - _latent(net, x)[0])

    @tf.function(input_signature=[rows])
    def reconstruct(x):
        recon = _latent(net, standardize(x))[0]
        return recon * scale + mean if scaler is not None else recon

    return {"energy": energy, "fast_energy": fast_energy, "statistics": statistics, "squared_error": squared_error,
            "reconstruct": reconstruct}


def _energies(compiled: dict, params: dict[str, np.ndarray], X: np.ndarray, step: int) -> np.ndarray:
    """Energies of the rows of ``X``: whole ``FAST_ROWS`` chunks through XLA (where it works), the rest in ``step``s."""
    n_fast = len(X) // FAST_ROWS * FAST_ROWS if step >= FAST_ROWS and "fast_energy" in compiled else 0
    parts = []
    if n_fast:
        whiten, mu, offset = (tf.constant(a) for a in gmm.whitened_params(params["phi"], params["mu"],
                                                                           params["cholesky"]))
        try:
            parts = [compiled["fast_energy"](X[i:i + FAST_ROWS], whiten, mu, offset).numpy().astype(np.float64)
                     for i in range(0, n_fast, FAST_ROWS)]
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError):
            compiled.pop("fast_energy", None)  # no XLA for this network here: the plain graph from now on
            parts, n_fast = [], 0
    if n_fast < len(X):
        param_tensors = _param_tensors(params)
        parts.append(_batched(lambda x: compiled["energy"](x, *param_tensors), X[n_fast:], step))
    return np.concatenate(parts)


def _batched(fn: Callable, X: np.ndarray, step: int) -> np.ndarray:
    """``fn`` over consecutive slices of ``step`` rows, results concatenated."""
    return np.concatenate([np.asarray(fn(X[i:i + step])) for i in range(0, len(X), step)], axis=0)


def _estimate_mixture(compiled: dict[str, Callable], X: np.ndarray) -> dict[str, np.ndarray]:
    """GMM parameters over all of ``X``, in batches of at most ``MAX_ROWS_PER_STEP`` rows.

    The statistics are taken around a shift (the mean code of the first rows: memberships sum to
    1, so Σ_k Σγz / Σ_k Σγ is that mean), which keeps the one-pass covariance formula accurate.
    """
    sum_gamma, sum_gamma_z, _ = compiled["statistics"](X[:1024], np.zeros(1, np.float32))  # broadcasts
    shift = (np.asarray(sum_gamma_z, np.float64).sum(0) / np.asarray(sum_gamma, np.float64).sum()).astype(np.float32)
    totals = None
    for i in range(0, len(X), MAX_ROWS_PER_STEP):
        stats = [np.asarray(s, np.float64) for s in compiled["statistics"](X[i:i + MAX_ROWS_PER_STEP], shift)]
        totals = stats if totals is None else [a + b for a, b in zip(totals, stats)]
    return gmm.params_from_statistics(*totals, n_samples=len(X), shift=shift.astype(np.float64))
