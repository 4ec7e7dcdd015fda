"""Contrastive explanations (CEM): pertinent negatives and pertinent positives.

Method (Dhurandhar et al., 2018, "Explanations based on the Missing"). For an instance ``x0`` of class ``t``
the explainer looks for an explanation instance ``z``:

- a **pertinent negative** (PN, ``mode='PN'``): the smallest change ``z = x0 + d`` that makes the classifier
  predict another class, where every feature only moves *away* from the no-information value ``n``:
  ``|z_i - n_i| >= |x0_i - n_i|`` (something absent is added; a feature may end on the other side of ``n`` if it
  ends further away, as in the reference). A PN says "had these features been more pronounced, the class would
  have changed".
- a **pertinent positive** (PP, ``mode='PP'``): the smallest part of the evidence in ``x0`` that alone keeps class
  ``t``: every feature of ``z`` lies between ``n`` and ``x0`` (the change ``z - x0`` points towards ``n``). The
  search starts from ``n`` (no evidence) and adds back as little as it can.

Both minimise, per instance and with ``w = z - anchor`` (anchor ``x0`` for a PN, ``n`` for a PP)::

    c * attack(z) + ||w||_2^2 + beta * ||w||_1 + gamma * ||AE(z) - z||_2^2

with the hinge attack loss on the classifier's outputs ``p`` (``p_t`` the original class, ``p_o`` the largest
other class): ``max(p_t - p_o, -kappa)`` for a PN, ``max(p_o - p_t, -kappa)`` for a PP. The smooth part is
minimised by gradient steps (gradients clipped to ``clip``) with a polynomially decaying learning rate
``lr_k = lr0 * (1 - k / K) ** 0.5``; the L1 part by shrinkage-thresholding of ``w`` (threshold ``beta``, as in
the paper and the reference), followed by the projection onto the feasible set (the nearest point within
``feature_range`` that satisfies the PN/PP constraint) and FISTA momentum ``y = x_new + k / (k + 3) *
(x_new - x)``, also projected.

The PN feasible set of a feature is not convex: the interval ``feature_range`` minus the gap ``|z - n| <
|x0 - n|``. Where both ends of the gap lie in the range, the projection is *lazy* (as in lazy-projection or
dual-averaging gradient methods): the optimiser's state ``x, y`` may stay inside the gap, while the gradient is
taken, and the candidate evaluated and returned, at the projected point (the nearest allowed end). A gradient that
keeps pushing a feature towards ``n`` thus carries the state through the gap over several steps until the far end
becomes the nearest one, and the candidate moves to the other side of ``n``; with an eager projection one step
would have to get past ``n`` at once (at most ``learning_rate_init * clip`` per step), so PNs that need a feature
to change sides were missed. Every returned PN still satisfies ``|z - n| >= |x0 - n|``. Gaps with one end outside
the range (e.g. images with ``n`` at the lower bound) and PPs (no gap) are projected at once.

A candidate counts as found when the attack holds with margin ``kappa`` (PN:
``p_o > p_t + kappa``; PP: ``p_t - kappa > p_o``); the best found candidate is the one with the smallest
elastic-net size ``||w||_2^2 + beta * ||w||_1``. The constant ``c`` is searched over ``c_steps`` runs per
instance: multiplied by 10 while nothing is found, bisected once something was.

PP pruning (``prune=True``, the default; beyond the reference). The elastic net ``||w||_2^2 + beta * ||w||_1``
with the usual ``beta = 0.1`` is dominated by its L2 part at evidence sizes of 0.1-1, and L2 prefers many faint
features to a few clear ones, so the search's PP spreads the evidence (on the digits protocol of
``docs/BENCHMARKS.md`` about 10 pixels kept against 3 needed). After the search each found PP is made sparser with
the classifier alone, keeping the success test (``p_t > p_o + kappa``, with the search's small slack): backward
elimination (repeatedly set back to ``n`` the kept feature whose removal leaves the largest margin, while the
margin holds), then each remaining feature is moved towards ``n`` as far as a grid of 32 steps allows. This runs
from the search's PP and from ``x0`` itself (all evidence); the result from ``x0`` is taken when it keeps fewer
features and no more L1 evidence than the one from the search's PP, which never keeps more of either than the
search's PP. The autoencoder term is not part of this step. It costs about ``features^2 / 2`` predictions per row
(in batches, one predictor call per elimination round) and is skipped above 256 features. PNs are not pruned.

Gradients: a Keras model gets exact gradients by automatic differentiation inside one compiled
``tf.function`` per ``c`` step (a ``tf.while_loop`` over all iterations, compiled with XLA when the model
allows; a Python loop over a compiled step was about 10x slower per iteration on small models); any other
callable is treated as a black box and differentiated numerically (central differences: ``eps[0]`` for the
attack loss with respect to the probabilities, ``eps[1]`` for the probabilities with respect to the features,
refreshed every ``update_num_grad`` iterations; one predictor call per iteration). The numerical gradient is
the gradient of the actual hinge at the explanation instance, so black-box PPs are found (the reference zeroes
it exactly where the PP loss is active and reports "no PP found").

Beyond the reference: ``explain`` takes several instances at once and optimises them together; ``c``, its
bounds, the best solutions and the early-stop state are kept per instance, so each instance follows the same
computation as alone: its result never depends on the other rows of its batch (bit for bit at a given batch
size), and it equals the one-at-a-time result up to float rounding (matrix products of different batch sizes
round differently in the last bits, which a long oscillating search sometimes grows into a different but equally
small solution). An optional early stop ends an instance's ``c`` step after ``early_stop`` iterations without a
better solution (off by default).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable, Union

import keras
import numpy as np
import tensorflow as tf

from engine.base import Explainer
from engine.errors import (
    DataError,
    NotFittedError,
    PredictorCallError,
    PredictorReturnTypeError,
    TrainingCancelled,
)
from engine.explanation import Explanation
from engine.validation import as_float_array
from engine.version import __version__

logger = logging.getLogger(__name__)

__all__ = ["CEM", "DEFAULT_DATA_CEM", "DEFAULT_META_CEM"]

#: Data keys of a CEM explanation, as in the reference (extra keys are added by :meth:`CEM.explain`).
DEFAULT_DATA_CEM: dict = {
    "PN": None,
    "PP": None,
    "PN_pred": None,
    "PP_pred": None,
    "grads_graph": None,
    "grads_num": None,
    "X": None,
    "X_pred": None,
}

#: Metadata of a CEM explanation, as in the reference.
DEFAULT_META_CEM: dict = {
    "name": None,
    "type": ["blackbox", "tensorflow", "keras"],
    "explanations": ["local"],
    "params": {},
    "version": None,
}

# Large stand-in for "no upper bound on c yet" in the c search.
_C_UNBOUNDED = 1e10
# Subtracted from the original class's output to take the maximum over the other classes.
_MASK_OFFSET = 1e4
# The optimised hinge asks for this much more margin than the success test (kappa) needs. Without it the
# iterates converge onto the success boundary itself, where float rounding decides "found" and the c search
# (so batched and one-at-a-time runs) could part ways; 1e-3 in probability changes the solutions negligibly.
_MARGIN_SLACK = 1e-3
# PP pruning: rows per predictor call, the largest number of features pruned (backward elimination costs about
# features^2 / 2 predictions per row), and the steps of the shrink grid per feature.
_PRUNE_CHUNK = 4096
_PRUNE_MAX_FEATURES = 256
_SHRINK_GRID = 32
# Relative tolerance for a PN gap end that falls outside feature_range by float32 rounding only.
_ROUNDING_TOL = 1e-6


def _broadcast(value, shape: tuple, name: str) -> np.ndarray:
    """A float or array (optionally with a leading axis of 1) broadcast to ``shape``."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or a numeric array, got {value!r}.") from exc
    if arr.ndim == len(shape) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    try:
        return np.broadcast_to(arr, shape).astype(np.float32)
    except ValueError as exc:
        raise DataError(
            f"{name} has shape {arr.shape}, which does not fit the feature shape {shape}; pass one value or "
            f"one value per feature."
        ) from exc


def _to_two_columns(proba: np.ndarray) -> np.ndarray:
    """A single sigmoid column (or a 1-D array) becomes ``[1 - p, p]``."""
    proba = proba.reshape(len(proba), -1)
    return np.concatenate([1.0 - proba, proba], axis=1) if proba.shape[1] == 1 else proba


def _project(v, feasible: dict, xp, lazy: bool = False):
    """Nearest point of the feasible set: clip to ``[lo, hi]``, then move points inside the gap to its nearest end.

    With ``lazy=True`` (the optimiser's state, see :class:`CEM`) points inside a gap that has an allowed end on both
    sides are left where they are; only the clip and the other gaps are applied. ``xp`` is ``numpy`` or
    ``tensorflow`` (the same code runs in the compiled loop and in the black-box loop).
    """
    clip = np.clip if xp is np else tf.clip_by_value
    v = clip(v, feasible["lo"], feasible["hi"])
    gap_lo, gap_hi = feasible["gap_lo"], feasible["gap_hi"]
    in_gap = (v > gap_lo) & (v < gap_hi)
    if lazy:
        in_gap = in_gap & ~feasible["crossable"]
    inf = np.float32(np.inf)
    to_low = xp.where(feasible["low_ok"], v - gap_lo, inf)
    to_up = xp.where(feasible["up_ok"], gap_hi - v, inf)
    go_up = (to_up < to_low) | ((to_up == to_low) & feasible["up_first"])
    end = xp.where(go_up, gap_hi, gap_lo)
    end = xp.where(feasible["low_ok"] | feasible["up_ok"], end, feasible["home"])
    return xp.where(in_gap, end, v)


class CEM(Explainer):
    """Contrastive Explanation Method: pertinent negatives (PN) or pertinent positives (PP).

    Parameters
    ----------
    predict : keras.Model or callable
        A Keras model (exact gradients by autodiff) or any function mapping an array of instances to class
        probabilities of shape ``(n, n_classes)`` (numerical gradients). One sigmoid column is read as
        ``[1 - p, p]``.
    mode : {'PN', 'PP'}
        Find pertinent negatives or pertinent positives.
    shape : tuple
        Shape of the input starting with the batch size, e.g. ``(1, 4)``; only ``shape[1:]`` is enforced, any
        number of instances can be explained at once.
    kappa : float
        Confidence margin of the attack loss.
    beta : float
        Weight (and shrinkage threshold) of the L1 term.
    feature_range : tuple
        ``(min, max)`` allowed for the explanation instance; floats or arrays with one value per feature.
    gamma : float
        Weight of the autoencoder reconstruction term (needs ``ae_model``).
    ae_model : keras.Model, optional
        Autoencoder trained on the classifier's training data.
    learning_rate_init : float
        Initial learning rate, decayed polynomially (power 0.5) to 0 over ``max_iterations``.
    max_iterations : int
        Iterations per value of ``c``.
    c_init : float
        Initial weight of the attack loss.
    c_steps : int
        Number of values of ``c`` tried per instance.
    eps : tuple
        Central-difference steps ``(for dL/dp, for dp/dx)`` of the numerical gradients (black-box predictors);
        floats or arrays with one value per class / per feature.
    clip : tuple
        ``(min, max)`` applied to the gradients (numerical and autodiff).
    update_num_grad : int
        Recompute numerical gradients every ``update_num_grad`` iterations.
    no_info_val : float or numpy.ndarray, optional
        Global or per-feature value that carries no information; set by :meth:`fit` when not given.
    write_dir : str, optional
        Accepted for compatibility with the reference; TensorBoard logging is not implemented and it is ignored.
    sess : optional
        Accepted for compatibility with the reference (TF1 sessions); ignored.
    early_stop : int, optional
        Keyword-only, beyond the reference. When set, an instance stops its current ``c`` step after this many
        iterations without a better solution (or without any solution); ``None`` (default) always runs
        ``max_iterations``.
    jit_compile : bool
        Keyword-only. Compile the white-box optimisation loop with XLA (falls back to a plain graph when the
        model cannot be compiled).
    prune : bool
        Keyword-only, beyond the reference; PP only. After the search, make each PP sparser: drop kept features
        (back to the no-information value) one at a time while the class still holds with margin ``kappa``, from
        the search's PP and from the instance itself, then shrink each remaining feature towards the
        no-information value as far as the class allows. The pruned PP replaces the search's only when it keeps
        fewer features and no more L1 evidence (see the module docstring). ``False`` returns the search's PP.

    Examples
    --------
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation='softmax')])
    >>> cem = CEM(model, mode='PN', shape=(1, 2), feature_range=(-3.0, 3.0), max_iterations=50, c_steps=2)
    >>> cem = cem.fit(np.zeros((10, 2), 'float32'))
    >>> exp = cem.explain(np.array([[0.5, -0.2]], 'float32'))
    >>> sorted(k for k in ('PN', 'PN_pred', 'X_pred') if k in exp.data)
    ['PN', 'PN_pred', 'X_pred']
    """

    def __init__(
        self,
        predict: Union[Callable[[np.ndarray], np.ndarray], keras.Model],
        mode: str,
        shape: tuple,
        kappa: float = 0.0,
        beta: float = 0.1,
        feature_range: tuple = (-1e10, 1e10),
        gamma: float = 0.0,
        ae_model: keras.Model | None = None,
        learning_rate_init: float = 1e-2,
        max_iterations: int = 1000,
        c_init: float = 10.0,
        c_steps: int = 10,
        eps: tuple = (1e-3, 1e-3),
        clip: tuple = (-100.0, 100.0),
        update_num_grad: int = 1,
        no_info_val: float | np.ndarray | None = None,
        write_dir: str | None = None,
        sess: Any = None,
        *,
        early_stop: int | None = None,
        jit_compile: bool = True,
        prune: bool = True,
    ) -> None:
        self.predict = predict
        self.mode = mode
        self.shape = shape
        self.kappa = kappa
        self.beta = beta
        self.feature_range = feature_range
        self.gamma = gamma
        self.ae_model = ae_model
        self.learning_rate_init = learning_rate_init
        self.max_iterations = max_iterations
        self.c_init = c_init
        self.c_steps = c_steps
        self.eps = eps
        self.clip = clip
        self.update_num_grad = update_num_grad
        self.no_info_val = no_info_val
        self.write_dir = write_dir
        self.sess = sess
        self.early_stop = early_stop
        self.jit_compile = jit_compile
        self.prune = prune
        self._compiled: dict = {}

    # Learned state: created by fit (None here, at class level, means "not fitted").
    no_info_val_: np.ndarray | None = None
    no_info_type_: str | None = None

    def _set_param(self, name: str, value: Any) -> None:
        if name == "predict":
            self.reset_predictor(value)  # checks it and forgets the loops compiled for the old one
        else:
            setattr(self, name, value)

    # ------------------------------------------------------------------ configuration

    @property
    def is_white_box(self) -> bool:
        """True when ``predict`` is a Keras model (gradients by autodiff)."""
        return isinstance(self.predict, keras.Model)

    @property
    def meta(self) -> dict:
        """The reference's metadata: name, type, explanations, params and engine version."""
        meta = copy.deepcopy(DEFAULT_META_CEM)
        meta["name"] = type(self).__name__
        meta["version"] = __version__
        meta["params"] = {
            "mode": self.mode,
            "shape": list(self.shape),
            "kappa": float(self.kappa),
            "beta": float(self.beta),
            "feature_range": [np.asarray(r, dtype=np.float32) if np.ndim(r) else float(r)
                              for r in self.feature_range],
            "gamma": float(self.gamma),
            "learning_rate_init": float(self.learning_rate_init),
            "max_iterations": int(self.max_iterations),
            "c_init": float(self.c_init),
            "c_steps": int(self.c_steps),
            "eps": [np.asarray(e, dtype=np.float32) if np.ndim(e) else float(e) for e in self.eps],
            "clip": [float(v) for v in self.clip],
            "update_num_grad": int(self.update_num_grad),
            "no_info_type": self.no_info_type_,
            "early_stop": None if self.early_stop is None else int(self.early_stop),
            "prune": bool(self.prune) if self.mode == "PP" else False,
            "gradients": "autodiff" if self.is_white_box else "numerical",
            "has_ae_model": self.ae_model is not None,
        }
        return meta

    def _feature_shape(self) -> tuple:
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"shape must be a tuple of ints starting with the batch size, got {self.shape!r}."
            ) from exc
        if len(shape) < 2:
            raise ValueError(
                f"shape must start with the batch size, e.g. (1, n_features); got {self.shape!r}."
            )
        return shape[1:]

    def _check_params(self) -> None:
        if self.mode not in ("PN", "PP"):
            raise ValueError(f"mode must be 'PN' (pertinent negative) or 'PP' (pertinent positive), got {self.mode!r}.")
        if not (isinstance(self.predict, keras.Model) or callable(self.predict)):
            raise TypeError("predict must be a Keras model or a function returning class probabilities.")
        for name in ("kappa", "beta", "gamma"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}.")
        if float(self.learning_rate_init) <= 0:
            raise ValueError(f"learning_rate_init must be positive, got {self.learning_rate_init}.")
        if float(self.c_init) <= 0:
            raise ValueError(f"c_init must be positive, got {self.c_init}.")
        for name in ("max_iterations", "c_steps", "update_num_grad"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.early_stop is not None and int(self.early_stop) < 1:
            raise ValueError(f"early_stop must be None or a number of iterations >= 1, got {self.early_stop}.")
        if len(self.clip) != 2 or float(self.clip[0]) > float(self.clip[1]):
            raise ValueError(f"clip must be (min, max) with min <= max, got {self.clip!r}.")
        if len(self.eps) != 2:
            raise ValueError(f"eps must be a pair (eps for dL/dp, eps for dp/dx), got {self.eps!r}.")
        if self.write_dir is not None:
            logger.warning("CEM: write_dir is accepted for compatibility but TensorBoard logging is not implemented.")
        if self.sess is not None:
            logger.warning("CEM: sess is ignored; the engine runs on TensorFlow 2 without sessions.")

    def _bounds(self, feat: tuple) -> tuple[np.ndarray, np.ndarray]:
        if len(self.feature_range) != 2:
            raise ValueError(f"feature_range must be (min, max), got {self.feature_range!r}.")
        lo = _broadcast(self.feature_range[0], feat, "feature_range[0]")
        hi = _broadcast(self.feature_range[1], feat, "feature_range[1]")
        if np.any(lo > hi):
            raise ValueError("feature_range has min > max for some features; pass (min, max).")
        return lo, hi

    def _no_info(self, feat: tuple) -> np.ndarray:
        value = self.no_info_val_ if self.no_info_val_ is not None else self.no_info_val
        if value is None:
            raise NotFittedError(
                "CEM has no no_info_val: call fit(train_data) first (it takes the per-feature median), or pass "
                "no_info_val to the constructor."
            )
        return _broadcast(value, feat, "no_info_val")

    # ------------------------------------------------------------------ fit

    def fit(self, train_data: np.ndarray, no_info_type: str = "median") -> "CEM":
        """Set the no-information value per feature from training data.

        Parameters
        ----------
        train_data : numpy.ndarray
            Representative sample of the training data, shape ``(n, *shape[1:])``.
        no_info_type : {'median', 'mean'}
            Statistic taken per feature.

        Returns
        -------
        CEM
            ``self``, with ``no_info_val_`` set.

        Examples
        --------
        >>> cem = CEM(lambda x: np.ones((len(x), 2)) / 2, mode='PN', shape=(1, 2))
        >>> cem.fit(np.array([[0., 1.], [2., 3.], [4., 5.]])).no_info_val_
        array([2., 3.], dtype=float32)
        """
        feat = self._feature_shape()
        data = as_float_array(train_data, name="train_data", ndim=len(feat) + 1)
        if data.shape[1:] != feat:
            raise DataError(
                f"train_data has instances of shape {data.shape[1:]} but the explainer was built for {feat} "
                f"(shape={tuple(self.shape)}); pass data with the model's input shape."
            )
        if no_info_type == "median":
            value = np.median(data, axis=0)
        elif no_info_type == "mean":
            value = np.mean(data, axis=0)
        else:
            raise ValueError(f"no_info_type must be 'median' or 'mean', got {no_info_type!r}.")
        self.no_info_val_ = value.astype(np.float32)
        self.no_info_type_ = no_info_type
        return self

    def reset_predictor(self, predictor: Union[Callable, keras.Model]) -> None:
        """Replace the predictor (model or black-box function); compiled loops are rebuilt on the next call.

        Examples
        --------
        >>> cem = CEM(lambda x: np.ones((len(x), 2)) / 2, mode='PN', shape=(1, 2))
        >>> cem.reset_predictor(lambda x: np.full((len(x), 2), 0.5))
        >>> cem.is_white_box
        False
        """
        if not (isinstance(predictor, keras.Model) or callable(predictor)):
            raise TypeError("predictor must be a Keras model or a function returning class probabilities.")
        self.predict = predictor
        self._compiled = {}

    # ------------------------------------------------------------------ predictor calls

    def _call_predictor(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of ``X`` as float64 ``(n, n_classes)``, with clear errors."""
        try:
            out = self.predict(X)
        except Exception as exc:
            raise PredictorCallError(
                f"the predictor raised {type(exc).__name__}: {exc} when called on an array of shape {X.shape}; "
                "it must accept a float32 array of instances and return class probabilities."
            ) from exc
        if isinstance(out, tf.Tensor):
            out = out.numpy()
        try:
            arr = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PredictorReturnTypeError(
                f"the predictor returned {type(out).__name__}, not an array of class probabilities of shape "
                f"(n, n_classes)."
            ) from exc
        if arr.ndim not in (1, 2) or arr.shape[0] != X.shape[0] or (arr.ndim == 2 and arr.shape[1] < 1):
            raise PredictorReturnTypeError(
                f"the predictor returned shape {arr.shape} for {X.shape[0]} instances; expected "
                f"({X.shape[0]}, n_classes) class probabilities."
            )
        if not np.all(np.isfinite(arr)):
            raise PredictorReturnTypeError("the predictor returned NaN or inf values; it must return probabilities.")
        return _to_two_columns(arr)

    def _model_proba(self, z: tf.Tensor) -> tf.Tensor:
        """Outputs of the Keras model inside the compiled loop (one sigmoid column becomes two)."""
        out = self.predict(z, training=False)
        out = tf.reshape(tf.cast(out, tf.float32), [tf.shape(z)[0], -1])
        if out.shape[-1] == 1:
            out = tf.concat([1.0 - out, out], axis=-1)
        return out

    # ------------------------------------------------------------------ losses and numerical gradients

    def loss_fn(self, pred_proba: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Hinge attack loss per instance (without the factor ``c``).

        PN: ``max(p_t - max_{i != t} p_i, -kappa)``; PP: ``max(max_{i != t} p_i - p_t, -kappa)``.

        Parameters
        ----------
        pred_proba : numpy.ndarray
            Predicted probabilities, shape ``(n, n_classes)``.
        Y : numpy.ndarray
            One-hot original classes, shape ``(n, n_classes)``.

        Returns
        -------
        numpy.ndarray
            Loss of each instance, shape ``(n,)``.

        Examples
        --------
        >>> cem = CEM(lambda x: x, mode='PN', shape=(1, 2), kappa=0.1)
        >>> cem.loss_fn(np.array([[0.7, 0.3]]), np.array([[1, 0]]))
        array([0.4])
        """
        return self._hinge(pred_proba, Y, -float(self.kappa))

    def _hinge(self, pred_proba: np.ndarray, Y: np.ndarray, floor: float) -> np.ndarray:
        pred_proba = np.asarray(pred_proba, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        target = np.sum(pred_proba * Y, axis=-1)
        other = np.max(pred_proba * (1.0 - Y) - Y * _MASK_OFFSET, axis=-1)
        margin = target - other if self.mode == "PN" else other - target
        return np.maximum(margin, floor)

    def perturb(self, X: np.ndarray, eps: float | np.ndarray, proba: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Every instance shifted up and down along each feature in turn.

        Parameters
        ----------
        X : numpy.ndarray
            Array of shape ``(n, *features)``.
        eps : float or numpy.ndarray
            Step per feature (a float or one value per feature).
        proba : bool
            When ``X`` holds probabilities: the step ``+eps`` on one class is balanced by ``-eps / (k - 1)`` on
            each of the ``k - 1`` others, so every row still sums to one.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            ``X + step`` and ``X - step``, each of shape ``(n * n_features, *features)``; row ``i * n_features + j``
            is instance ``i`` moved along feature ``j``.

        Examples
        --------
        >>> pos, neg = CEM(lambda x: x, mode='PN', shape=(1, 2)).perturb(np.zeros((1, 2)), 0.1)
        >>> pos
        array([[0.1, 0. ],
               [0. , 0.1]])
        """
        X = np.asarray(X)
        n, feat = X.shape[0], X.shape[1:]
        size = int(np.prod(feat))
        step = _broadcast(eps, feat, "eps").reshape(-1).astype(X.dtype if X.dtype.kind == "f" else np.float64)
        shift = np.diag(step)  # (size, size): row j moves feature j
        if proba:
            if size < 2:
                raise ValueError("proba=True needs at least two classes.")
            shift = shift - (1.0 - np.eye(size)) * (step[:, None] / (size - 1))
        flat = X.reshape(n, 1, size)
        pos = (flat + shift[None]).reshape((n * size,) + feat)
        neg = (flat - shift[None]).reshape((n * size,) + feat)
        return pos, neg

    def _numerical_gradients(self, p: np.ndarray, p_pos: np.ndarray, p_neg: np.ndarray, Y: np.ndarray,
                             eps_x: np.ndarray) -> np.ndarray:
        """Chain rule ``dL/dx = sum_k dL/dp_k * dp_k/dx`` from predictions at ``x`` and at ``x +- eps_x``."""
        n, n_classes = p.shape
        eps_p = _broadcast(self.eps[0], (n_classes,), "eps[0]").astype(np.float64)
        # dL/dp: central differences of the hinge loss in probability space.
        l_pos_in, l_neg_in = self.perturb(p, eps_p)
        Y_rep = np.repeat(Y, n_classes, axis=0)
        floor = -float(self.kappa) - _MARGIN_SLACK
        dl_dp = (self._hinge(l_pos_in, Y_rep, floor) - self._hinge(l_neg_in, Y_rep, floor)).reshape(n, n_classes)
        dl_dp /= 2 * eps_p
        # dp/dx: central differences of the predictor along each feature.
        size = eps_x.size
        dp_dx = (p_pos - p_neg).reshape(n, size, n_classes) / (2 * eps_x.reshape(1, size, 1).astype(np.float64))
        return np.einsum("nfk,nk->nf", dp_dx, dl_dp)

    def get_gradients(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Numerical gradient of the attack loss (without ``c``) with respect to the instances ``X``.

        Parameters
        ----------
        X : numpy.ndarray
            Instances at which the gradient is evaluated (the explanation candidates), ``(n, *features)``.
        Y : numpy.ndarray
            One-hot original classes ``(n, n_classes)`` (integer labels are accepted too).

        Returns
        -------
        numpy.ndarray
            Gradient of shape ``(n, *features)``.

        Examples
        --------
        >>> w = np.array([[1.0, -1.0], [-1.0, 1.0]])
        >>> softmax = lambda x: np.exp(x @ w) / np.exp(x @ w).sum(1, keepdims=True)
        >>> cem = CEM(softmax, mode='PN', shape=(1, 2))
        >>> cem.get_gradients(np.array([[0.5, 0.0]]), np.array([[1, 0]])).round(2)
        array([[ 0.79, -0.79]])
        """
        feat = self._feature_shape()
        X = as_float_array(X, name="X", ndim=len(feat) + 1)
        if X.shape[1:] != feat:
            raise DataError(f"X has instances of shape {X.shape[1:]}; the explainer was built for {feat}.")
        eps_x = _broadcast(self.eps[1], feat, "eps[1]")
        pos, neg = self.perturb(X, eps_x)
        out = self._call_predictor(np.concatenate([X, pos, neg]).astype(np.float32))
        n, m = len(X), len(pos)
        Y = self._one_hot(Y, n, out.shape[1])
        grads = self._numerical_gradients(out[:n], out[n:n + m], out[n + m:], Y, eps_x)
        return grads.reshape(X.shape)

    @staticmethod
    def _one_hot(Y, n: int, n_classes: int) -> np.ndarray:
        Y = np.asarray(Y)
        if Y.ndim == 2 and Y.shape == (n, n_classes):
            if not np.all((Y == 0) | (Y == 1)) or not np.all(Y.sum(axis=1) == 1):
                raise DataError("Y must be one-hot (one 1 per row) or integer class labels.")
            return Y.astype(np.float64)
        if Y.ndim == 1 and Y.shape[0] == n:
            if Y.dtype.kind == "f" and not np.all(Y == np.round(Y)):
                raise DataError("Y holds non-integer labels; pass integer classes or one-hot rows.")
            labels = Y.astype(int)
            if labels.min() < 0 or labels.max() >= n_classes:
                raise DataError(f"Y has labels outside 0..{n_classes - 1}, the classes the predictor returns.")
            return np.eye(n_classes)[labels]
        raise DataError(
            f"Y has shape {Y.shape}; expected ({n},) integer labels or ({n}, {n_classes}) one-hot rows."
        )

    # ------------------------------------------------------------------ the optimisation

    def _prepare(self, X: np.ndarray) -> dict:
        """Per-instance anchor, start and feasible set of the search.

        The feasible set of each feature is the interval ``[lo, hi]`` minus the open gap ``(gap_lo, gap_hi)``:

        - PN: ``feature_range`` minus the points closer to ``n`` than ``x0`` is, ``|z - n| >= |x0 - n|`` (a feature
          moves away from the no-information value; it may end on the other side of ``n`` if it ends further away).
        - PP: between ``n`` and ``x0`` (within ``feature_range``); no gap.
        """
        feat = X.shape[1:]
        range_lo, range_hi = self._bounds(feat)
        no_info = self._no_info(feat)
        if self.mode == "PN":
            radius = np.abs(X - no_info)
            lo, hi = np.broadcast_to(range_lo, X.shape), np.broadcast_to(range_hi, X.shape)
            # x0's own end of the gap is x0 itself, clipped into the range (a row outside feature_range stays at
            # the range's edge rather than jumping to the far side of n)
            gap_lo = np.where(X < no_info, np.maximum(no_info - radius, lo), no_info - radius)
            gap_hi = np.where(X >= no_info, np.minimum(no_info + radius, hi), no_info + radius)
            # a far end that misses the range by float rounding only (e.g. a median half-way between the training
            # min and max) is the range's edge, so that it stays reachable
            tol_lo, tol_hi = (_ROUNDING_TOL * (1.0 + np.abs(b)) for b in (lo, hi))
            gap_lo = np.where((gap_lo < lo) & (gap_lo >= lo - tol_lo), lo, gap_lo)
            gap_hi = np.where((gap_hi > hi) & (gap_hi <= hi + tol_hi), hi, gap_hi)
            anchor = X
        else:
            # The search starts with no evidence (at n) and adds back as little of x0 as it can.
            lo = np.clip(np.minimum(X, no_info), range_lo, range_hi)
            hi = np.clip(np.maximum(X, no_info), range_lo, range_hi)
            gap_lo = gap_hi = np.broadcast_to(no_info, X.shape)
            anchor = np.broadcast_to(no_info, X.shape)
        f32 = np.float32
        home = np.clip(anchor, lo, hi)
        feasible = {
            "lo": lo.astype(f32), "hi": hi.astype(f32), "gap_lo": gap_lo.astype(f32), "gap_hi": gap_hi.astype(f32),
            # which end of the gap exists inside [lo, hi], and which one a point in the middle goes to
            "low_ok": gap_lo >= lo, "up_ok": gap_hi <= hi, "up_first": X >= no_info, "home": home.astype(f32),
            # gaps with an allowed end on both sides: the optimiser's state may cross them over several steps
            "crossable": (gap_lo >= lo) & (gap_hi <= hi) & (gap_hi > gap_lo),
        }
        return {"anchor": np.ascontiguousarray(anchor, dtype=f32), "feasible": feasible, "start": home.astype(f32),
                "no_info": no_info}

    def _hyper(self) -> dict:
        max_iter = int(self.max_iterations)
        return {
            "kappa": float(self.kappa),
            "beta": float(self.beta),
            "gamma": float(self.gamma),
            "lr0": float(self.learning_rate_init),
            "clip_lo": float(self.clip[0]),
            "clip_hi": float(self.clip[1]),
            "max_iter": max_iter,
            "patience": int(self.early_stop) if self.early_stop is not None else max_iter + 1,
        }

    def _use_ae(self) -> bool:
        if float(self.gamma) > 0 and self.ae_model is None:
            logger.warning("CEM: gamma > 0 but no ae_model was given; the autoencoder term is left out.")
        return self.ae_model is not None and float(self.gamma) > 0

    def _white_box_step_fn(self, use_ae: bool, jit: bool):
        """Compiled function running one ``c`` step (all iterations) for a batch of instances."""
        key = ("white", self.mode, use_ae, jit, id(self.predict), id(self.ae_model))
        if key in self._compiled:
            return self._compiled[key]
        mode_pn = self.mode == "PN"
        ae_model = self.ae_model

        def c_step(x0, anchor, feasible, start, c, onehot, best_dist, best_z, best_proba,
                   kappa, beta, gamma, lr0, clip_lo, clip_hi, max_iter, patience):
            rank = len(x0.shape)
            feat_axes = list(range(1, rank))
            n = tf.shape(x0)[0]
            per_inst = [n] + [1] * (rank - 1)
            max_iter_f = tf.cast(max_iter, tf.float32)

            def class_scores(proba):
                target = tf.reduce_sum(proba * onehot, axis=-1)
                other = tf.reduce_max(proba * (1.0 - onehot) - onehot * _MASK_OFFSET, axis=-1)
                return target, other

            def smooth_loss(z):
                target, other = class_scores(self._model_proba(z))
                margin = target - other if mode_pn else other - target
                loss = tf.reduce_sum(c * tf.maximum(margin, -kappa - _MARGIN_SLACK))
                loss += tf.reduce_sum(tf.square(z - anchor))
                if use_ae:
                    loss += gamma * tf.reduce_sum(tf.square(ae_model(z, training=False) - z))
                return loss

            def body(k, x, y, grad, found_c, step_best, best_dist, best_z, best_proba, stall, active):
                k_f = tf.cast(k, tf.float32)
                lr = lr0 * tf.sqrt(1.0 - k_f / max_iter_f)
                # x and y are the optimiser's (lazily projected) state; gradients and candidates are taken at
                # their projections onto the feasible set
                y_eval = _project(y, feasible, tf)
                with tf.GradientTape() as tape:
                    tape.watch(y_eval)
                    loss = smooth_loss(y_eval)
                g = tf.clip_by_value(tape.gradient(loss, y_eval), clip_lo, clip_hi)
                w = y - lr * g - anchor
                w = tf.sign(w) * tf.maximum(tf.abs(w) - beta, 0.0)  # shrinkage-thresholding of the L1 term
                x_state = _project(anchor + w, feasible, tf, lazy=True)
                y_new = _project(x_state + (k_f / (k_f + 3.0)) * (x_state - x), feasible, tf, lazy=True)  # FISTA
                x_new = _project(x_state, feasible, tf)  # the candidate explanation
                proba = self._model_proba(x_new)
                target, other = class_scores(proba)
                success = other > target + kappa if mode_pn else target - kappa > other
                delta = x_new - anchor
                dist = tf.reduce_sum(tf.square(delta), feat_axes) + beta * tf.reduce_sum(tf.abs(delta), feat_axes)
                better_step = success & (dist < step_best) & active
                better = success & (dist < best_dist) & active
                step_best = tf.where(better_step, dist, step_best)
                found_c = found_c | better_step
                best_dist = tf.where(better, dist, best_dist)
                better_b = tf.reshape(better, per_inst)
                best_z = tf.where(better_b, x_new, best_z)
                best_proba = tf.where(better[:, None], proba, best_proba)
                stall = tf.where(better_step, 0, stall + 1)
                active_b = tf.reshape(active, per_inst)
                x = tf.where(active_b, x_state, x)
                y = tf.where(active_b, y_new, y)
                grad = tf.where(active_b, g, grad)
                active = active & (stall < patience)
                return k + 1, x, y, grad, found_c, step_best, best_dist, best_z, best_proba, stall, active

            def cond(k, *state):
                return (k < max_iter) & tf.reduce_any(state[-1])

            init = (
                tf.constant(0), start, start, tf.zeros_like(start), tf.zeros([n], tf.bool),
                tf.fill([n], tf.constant(np.inf, tf.float32)), best_dist, best_z, best_proba,
                tf.zeros([n], tf.int32), tf.ones([n], tf.bool),
            )
            out = tf.while_loop(cond, body, init)
            k, _, _, grad, found_c, _, best_dist, best_z, best_proba, _, _ = out
            return found_c, best_dist, best_z, best_proba, grad, k

        # autograph is off: the loop is an explicit tf.while_loop and every Python branch is a trace-time constant
        fn = tf.function(c_step, jit_compile=jit, reduce_retracing=True, autograph=False)
        self._compiled[key] = fn
        return fn

    def _run_white_box_c_step(self, prep, X, c, onehot, best, hyper, use_ae):
        args = (
            X, prep["anchor"], prep["feasible"], prep["start"], c.astype(np.float32),
            onehot.astype(np.float32), best["dist"], best["z"], best["proba"],
            np.float32(hyper["kappa"]), np.float32(hyper["beta"]), np.float32(hyper["gamma"]),
            np.float32(hyper["lr0"]), np.float32(hyper["clip_lo"]), np.float32(hyper["clip_hi"]),
            np.int32(hyper["max_iter"]), np.int32(hyper["patience"]),
        )
        jit = bool(self.jit_compile) and self._compiled.get("jit_ok", True)
        try:
            out = self._white_box_step_fn(use_ae, jit)(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, NotImplementedError) as exc:
            if not jit:
                raise
            logger.info("CEM: XLA compilation failed (%s); using a plain TensorFlow graph.", exc)
            self._compiled["jit_ok"] = False
            out = self._white_box_step_fn(use_ae, False)(*args)
        found_c, dist, z, proba, grad, iters = (o.numpy() for o in out)
        best.update(dist=dist, z=z, proba=proba)
        return found_c, grad, np.zeros_like(grad), int(iters)

    def _ae_gradient_fn(self):
        key = ("ae_grad", id(self.ae_model))
        if key not in self._compiled:
            ae_model = self.ae_model

            @tf.function(reduce_retracing=True, autograph=False)
            def ae_grad(z):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    loss = tf.reduce_sum(tf.square(ae_model(z, training=False) - z))
                return tape.gradient(loss, z)

            self._compiled[key] = ae_grad
        return self._compiled[key]

    def _run_black_box_c_step(self, prep, X, c, onehot, best, hyper, use_ae):
        """One ``c`` step with numerical gradients of the attack loss (numpy; one predictor call per iteration)."""
        n, feat = X.shape[0], X.shape[1:]
        size = int(np.prod(feat))
        per_inst = (n,) + (1,) * len(feat)
        anchor, feasible = prep["anchor"], prep["feasible"]
        kappa, beta, gamma = hyper["kappa"], hyper["beta"], hyper["gamma"]
        max_iter, patience = hyper["max_iter"], hyper["patience"]
        clip_lo, clip_hi = hyper["clip_lo"], hyper["clip_hi"]
        eps_x = _broadcast(self.eps[1], feat, "eps[1]")
        c_b = c.reshape(per_inst)
        every = int(self.update_num_grad)
        ae_grad = self._ae_gradient_fn() if use_ae else None

        def num_grad(p_y, p_pos, p_neg):
            grads = self._numerical_gradients(p_y, p_pos, p_neg, onehot, eps_x).reshape(X.shape)
            return np.clip(c_b * grads, clip_lo, clip_hi).astype(np.float32)

        def call(rows_eval, y_grad):
            """Predictions at ``rows_eval`` and, when ``y_grad`` is given, the numerical gradient there."""
            parts = [rows_eval]
            if y_grad is not None:
                pos, neg = self.perturb(y_grad, eps_x)
                parts += [y_grad, pos, neg]
            out = self._call_predictor(np.concatenate(parts).astype(np.float32))
            if out.shape[1] != onehot.shape[1]:
                raise PredictorReturnTypeError(
                    f"the predictor returned {out.shape[1]} classes, earlier {onehot.shape[1]}."
                )
            m = len(rows_eval)
            if y_grad is None:
                return out[:m], None
            return out[:m], num_grad(out[m:m + n], out[m + n:m + n + n * size], out[m + n + n * size:])

        x = prep["start"].copy()
        y = x.copy()
        _, g_num = call(x[:0], y)
        g_graph = np.zeros_like(x)
        found_c = np.zeros(n, bool)
        step_best = np.full(n, np.inf, np.float32)
        stall = np.zeros(n, int)
        active = np.ones(n, bool)
        k = 0
        while k < max_iter and active.any():
            lr = hyper["lr0"] * np.sqrt(1.0 - k / max_iter)
            y_eval = _project(y, feasible, np).astype(np.float32)  # x, y: the lazily projected state
            g_smooth = 2.0 * (y_eval - anchor)
            if ae_grad is not None:
                g_smooth = g_smooth + gamma * ae_grad(tf.constant(y_eval)).numpy()
            g_smooth = np.clip(g_smooth, clip_lo, clip_hi)
            w = y - lr * (g_smooth + g_num) - anchor
            w = np.sign(w) * np.maximum(np.abs(w) - beta, 0.0)
            x_state = _project(anchor + w, feasible, np, lazy=True).astype(np.float32)
            y_new = _project(x_state + (k / (k + 3.0)) * (x_state - x), feasible, np, lazy=True).astype(np.float32)
            x_new = _project(x_state, feasible, np).astype(np.float32)
            refresh = (k + 1) % every == 0 and k + 1 < max_iter
            y_new_eval = _project(y_new, feasible, np).astype(np.float32) if refresh else None
            proba, g_num_new = call(x_new, y_new_eval)
            target = np.sum(proba * onehot, axis=-1)
            other = np.max(proba * (1.0 - onehot) - onehot * _MASK_OFFSET, axis=-1)
            success = other > target + kappa if self.mode == "PN" else target - kappa > other
            delta = (x_new - anchor).reshape(n, -1)
            dist = (np.sum(delta ** 2, axis=1) + beta * np.sum(np.abs(delta), axis=1)).astype(np.float32)
            better_step = success & (dist < step_best) & active
            better = success & (dist < best["dist"]) & active
            step_best = np.where(better_step, dist, step_best)
            found_c |= better_step
            best["dist"] = np.where(better, dist, best["dist"])
            best["z"] = np.where(better.reshape(per_inst), x_new, best["z"])
            best["proba"] = np.where(better[:, None], proba.astype(np.float32), best["proba"])
            stall = np.where(better_step, 0, stall + 1)
            act_b = active.reshape(per_inst)
            x = np.where(act_b, x_state, x)
            y = np.where(act_b, y_new, y)
            g_graph = np.where(act_b, g_smooth, g_graph)
            if g_num_new is not None:
                g_num = np.where(act_b, g_num_new, g_num)
            active &= stall < patience
            k += 1
        return found_c, g_graph, g_num, k

    # ------------------------------------------------------------------ PP pruning

    def _margins(self, Z: np.ndarray, onehot: np.ndarray) -> np.ndarray:
        """``p_t - max_{i != t} p_i`` of the flat rows ``Z`` (classes ``onehot``), predicted in bounded chunks."""
        feat = self._feature_shape()
        out = []
        for start in range(0, len(Z), _PRUNE_CHUNK):
            chunk = np.ascontiguousarray(Z[start:start + _PRUNE_CHUNK].reshape((-1,) + feat), dtype=np.float32)
            proba = self._compiled_proba()(chunk).numpy() if self.is_white_box else self._call_predictor(chunk)
            hot = onehot[start:start + _PRUNE_CHUNK]
            target = np.sum(proba * hot, axis=-1)
            out.append(target - np.max(proba * (1.0 - hot) - hot * _MASK_OFFSET, axis=-1))
        return np.concatenate(out) if out else np.zeros(0)

    def _compiled_proba(self):
        """The Keras model's probabilities as one compiled function (pruning calls it once per round)."""
        key = ("proba", id(self.predict))
        if key not in self._compiled:
            spec = tf.TensorSpec((None,) + tuple(self._feature_shape()), tf.float32)
            self._compiled[key] = tf.function(self._model_proba, input_signature=[spec], autograph=False)
        return self._compiled[key]

    def warm_up(self, X: np.ndarray) -> "CEM":
        """Compile what :meth:`explain` runs for instances shaped like ``X``, so the first explanation is quick.

        Runs a two-iteration search of one ``c`` step (the iterations and ``c`` are inputs of the compiled
        loop, so it is the same program) and, for a pertinent positive with ``prune``, traces the pruning's
        probability function. Settings are left as they were. A black-box predictor has nothing to compile.

        Examples
        --------
        >>> cem = CEM(model, mode='PN', shape=(1, 4)).warm_up(X_test[:1])  # doctest: +SKIP
        >>> exp = cem.explain(X_test[:1])  # no compilation wait  # doctest: +SKIP
        """
        if not self.is_white_box:
            return self
        saved = self.max_iterations, self.c_steps
        try:
            self.max_iterations, self.c_steps = 2, 1
            self.explain(X)
            if self.mode == "PP" and self.prune:
                self._compiled_proba()(np.zeros((1,) + tuple(self._feature_shape()), np.float32))
        finally:
            self.max_iterations, self.c_steps = saved
        return self

    def _drop_features(self, z: np.ndarray, empty: np.ndarray, onehot: np.ndarray, need: float) -> np.ndarray:
        """Backward elimination: per row, set the kept feature whose removal leaves the largest margin back to
        ``empty``, while that margin exceeds ``need``. Rows are independent; one predictor call per round."""
        z = z.copy()
        active = np.ones(len(z), bool)
        while active.any():
            rows, feats = np.nonzero((np.abs(z - empty) > 0) & active[:, None])
            if len(rows) == 0:
                break
            cand = z[rows]
            cand[np.arange(len(rows)), feats] = empty[rows, feats]
            margin = self._margins(cand, onehot[rows])
            best = np.full(len(z), -np.inf)
            np.maximum.at(best, rows, margin)
            pick = (margin == best[rows]) & (margin > need)
            # the first feature reaching the row's best margin, so that ties break the same way in any batch
            first = np.full(len(z), -1)
            for r, f in zip(rows[pick][::-1], feats[pick][::-1]):
                first[r] = f
            done = first < 0
            idx = np.flatnonzero(~done)
            z[idx, first[idx]] = empty[idx, first[idx]]
            active &= ~done
        return z

    def _shrink_features(self, z: np.ndarray, empty: np.ndarray, onehot: np.ndarray, need: float) -> np.ndarray:
        """Move each kept feature (largest first) towards ``empty`` as far as a grid of steps keeps the margin."""
        z = z.copy()
        n, size = z.shape
        order = np.argsort(-np.abs(z - empty), axis=1, kind="stable")
        scales = np.linspace(0.0, 1.0, _SHRINK_GRID + 1)[:-1]
        for j in range(size):
            feat = order[:, j]
            rows = np.flatnonzero(np.abs(z[np.arange(n), feat] - empty[np.arange(n), feat]) > 0)
            if len(rows) == 0:
                break
            f = feat[rows]
            cand = np.repeat(z[rows], len(scales), axis=0)
            r_rep, f_rep = np.repeat(rows, len(scales)), np.repeat(f, len(scales))
            cand[np.arange(len(cand)), f_rep] = (empty[r_rep, f_rep]
                                                 + np.tile(scales, len(rows)) * (z[r_rep, f_rep] - empty[r_rep, f_rep]))
            ok = (self._margins(cand, onehot[r_rep]) > need).reshape(len(rows), len(scales))
            has = ok.any(axis=1)
            smallest = np.argmax(ok, axis=1)
            take = rows[has]
            z[take, f[has]] = cand.reshape(len(rows), len(scales), size)[np.flatnonzero(has), smallest[has], f[has]]
        return z

    def _prune_pp(self, X: np.ndarray, prep: dict, onehot: np.ndarray, best: dict) -> None:
        """Sparser PPs for the found rows (see ``prune``); updates ``best`` in place."""
        found = np.flatnonzero(np.isfinite(best["dist"]))
        feat = X.shape[1:]
        size = int(np.prod(feat))
        if len(found) == 0 or size > _PRUNE_MAX_FEATURES:
            return
        need = float(self.kappa) + _MARGIN_SLACK
        lo, hi = (prep["feasible"][k].reshape(len(X), size)[found] for k in ("lo", "hi"))
        empty = prep["start"].reshape(len(X), size)[found]
        anchor = prep["anchor"].reshape(len(X), size)[found]
        hot = onehot[found]
        searched = best["z"].reshape(len(X), size)[found]
        from_search = self._shrink_features(self._drop_features(searched, empty, hot, need), empty, hot, need)
        full = np.clip(X.reshape(len(X), size)[found], lo, hi)
        from_full = self._drop_features(full, empty, hot, need)
        ok_full = self._margins(from_full, hot) > need  # False only where x0 itself misses the margin
        from_full = self._shrink_features(from_full, empty, hot, need)

        def size_of(z):
            return (np.abs(z - empty) > 0).sum(axis=1), np.abs(z - anchor).sum(axis=1)

        (l0_s, l1_s), (l0_f, l1_f) = size_of(from_search), size_of(from_full)
        use_full = ok_full & (l0_f < l0_s) & (l1_f <= l1_s)
        pruned = np.where(use_full[:, None], from_full, from_search).astype(np.float32)
        proba = self._predict_proba(pruned.reshape((len(found),) + feat))
        delta = pruned - anchor
        beta = float(self.beta)
        best["z"][found] = pruned.reshape((len(found),) + feat)
        best["proba"][found] = proba.astype(np.float32)
        best["dist"][found] = (np.sum(delta ** 2, axis=1) + beta * np.sum(np.abs(delta), axis=1)).astype(np.float32)

    def attack(self, X: np.ndarray, Y: np.ndarray, verbose: bool = False, **kwargs) -> tuple:
        """Search PNs or PPs for the instances ``X`` of classes ``Y``.

        Parameters
        ----------
        X : numpy.ndarray
            Instances, shape ``(n, *shape[1:])``.
        Y : numpy.ndarray
            One-hot classes ``(n, n_classes)`` (or integer labels ``(n,)``) the PN must leave / the PP must keep;
            ``None`` takes the predicted classes.
        verbose : bool
            Log the progress of the ``c`` search.
        **kwargs
            ``progress`` and ``cancel`` as in :meth:`explain`.

        Returns
        -------
        (numpy.ndarray, (numpy.ndarray, numpy.ndarray))
            The best explanation instance per row of ``X`` (NaN rows where none was found) and the last
            gradients ``(grads_graph, grads_num)``.
        """
        result = self._attack(X, Y, verbose=verbose, **kwargs)
        return result["best"], (result["grads_graph"], result["grads_num"])

    def _validate_X(self, X) -> np.ndarray:
        feat = self._feature_shape()
        X = as_float_array(X, name="X", ndim=(len(feat), len(feat) + 1))
        if X.ndim == len(feat):
            X = X[None]
        if X.shape[1:] != feat:
            raise DataError(
                f"X has instances of shape {X.shape[1:]} but the explainer was built for {feat} "
                f"(shape={tuple(self.shape)}); pass an array of shape (n, {', '.join(map(str, feat))})."
            )
        return np.ascontiguousarray(X)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.is_white_box:
            return self._call_predictor(X)
        try:
            out = self.predict(X, training=False)
        except Exception as exc:
            raise PredictorCallError(
                f"the Keras model raised {type(exc).__name__}: {exc} on input of shape {X.shape}."
            ) from exc
        out = np.asarray(out, dtype=np.float64)
        if out.ndim not in (1, 2) or out.shape[0] != X.shape[0]:
            raise PredictorReturnTypeError(
                f"the Keras model returned shape {out.shape} for {X.shape[0]} instances; expected "
                f"({X.shape[0]}, n_classes)."
            )
        return _to_two_columns(out)

    def _attack(self, X, Y, verbose=False, progress=None, cancel=None) -> dict:
        self._check_params()
        X = self._validate_X(X)
        prep = self._prepare(X)
        n = len(X)
        x_proba = self._predict_proba(X)
        n_classes = x_proba.shape[1]
        onehot = self._one_hot(np.argmax(x_proba, axis=1) if Y is None else Y, n, n_classes)
        hyper = self._hyper()
        use_ae = self._use_ae()
        run = self._run_white_box_c_step if self.is_white_box else self._run_black_box_c_step
        c = np.full(n, float(self.c_init), np.float64)
        c_lower = np.zeros(n)
        c_upper = np.full(n, _C_UNBOUNDED)
        best = {"dist": np.full(n, np.inf, np.float32), "z": X.copy(),
                "proba": np.zeros((n, n_classes), np.float32)}
        c_of_best = np.full(n, np.nan)
        iterations = []
        start_time = time.perf_counter()
        grads_graph = grads_num = np.zeros_like(X)
        for step in range(int(self.c_steps)):
            if cancel is not None and cancel.cancelled:
                raise TrainingCancelled("CEM explanation was cancelled.")
            before = best["dist"].copy()
            found_c, grads_graph, grads_num, iters = run(prep, X, c, onehot, best, hyper, use_ae)
            iterations.append(iters)
            improved = best["dist"] < before
            c_of_best = np.where(improved, c, c_of_best)
            # c search: bisect once a solution exists, grow by 10 while there is none.
            c_upper = np.where(found_c, np.minimum(c_upper, c), c_upper)
            c_lower = np.where(found_c, c_lower, np.maximum(c_lower, c))
            c = np.where(c_upper < _C_UNBOUNDED, (c_lower + c_upper) / 2.0, c * 10.0)
            n_found = int(np.isfinite(best["dist"]).sum())
            if verbose:
                logger.info("CEM c step %d/%d: %d iterations, %d/%d instances with a %s", step + 1,
                            self.c_steps, iters, n_found, n, self.mode)
            if progress is not None:
                progress({"c_step": step + 1, "c_steps": int(self.c_steps), "iterations": iters,
                          "found": n_found, "n": n, "elapsed": time.perf_counter() - start_time})
        if self.mode == "PP" and self.prune:
            if cancel is not None and cancel.cancelled:
                raise TrainingCancelled("CEM explanation was cancelled.")
            self._prune_pp(X, prep, onehot, best)
        found = np.isfinite(best["dist"])
        best_z = np.where(found.reshape((n,) + (1,) * (X.ndim - 1)), best["z"], np.nan).astype(np.float32)
        best_proba = np.where(found[:, None], best["proba"], np.nan).astype(np.float32)
        return {"X": X, "X_proba": x_proba, "onehot": onehot, "best": best_z, "proba": best_proba,
                "found": found, "best_c": c_of_best, "grads_graph": grads_graph, "grads_num": grads_num,
                "no_info": prep["no_info"], "iterations": iterations}

    # ------------------------------------------------------------------ explain

    def explain(self, X: np.ndarray, Y: np.ndarray | None = None, verbose: bool = False, *,
                progress: Callable[[dict], None] | None = None, cancel=None) -> Explanation:
        """Explain instances with pertinent negatives or pertinent positives.

        Parameters
        ----------
        X : numpy.ndarray
            Instances of shape ``(n, *shape[1:])`` (one instance may be given without the batch axis). Several
            instances are optimised together, each by the same computation as alone (its result does not depend
            on the other rows; it matches the one-at-a-time result up to float rounding).
        Y : numpy.ndarray, optional
            Classes to explain (one-hot or integer labels); by default the predicted classes.
        verbose : bool
            Log the progress of the ``c`` search.
        progress : callable, optional
            Called after each ``c`` step with a dict ``{'c_step', 'c_steps', 'iterations', 'found', 'n',
            'elapsed'}``.
        cancel : engine.training.CancelToken, optional
            Checked before each ``c`` step; raises :class:`~engine.errors.TrainingCancelled`.

        Returns
        -------
        Explanation
            ``meta``: name, type, explanations, params (the settings), version. ``data``: the reference's keys

            - ``PN`` / ``PP`` (the key of ``mode``; the other stays ``None``): the explanation instances. With one
              instance: an array ``(1, *features)``, or ``None`` when nothing was found (as the reference); with
              several: ``(n, *features)`` with NaN rows where nothing was found.
            - ``PN_pred`` / ``PP_pred``: predicted class of the explanation (int or ``None`` for one instance;
              an int array with -1 where nothing was found for several).
            - ``grads_graph``, ``grads_num``: the last autodiff and numerical gradients, ``(n, *features)``.
            - ``X``: the instances; ``X_pred``: their predicted classes (int for one instance, else an array).

            and, for pages and batch use, always arrays: ``X_proba`` ``(n, n_classes)``; ``PN_proba`` /
            ``PP_proba`` ``(n, n_classes)`` (NaN where not found); ``found`` ``(n,)`` bool; ``delta`` =
            explanation - X ``(n, *features)`` (NaN where not found); ``target`` the explained class per
            instance; ``no_info_val`` ``features``; ``best_c`` the attack weight ``c`` of the best solution (NaN
            where not found).

        Raises
        ------
        NotFittedError
            When neither ``fit`` was called nor ``no_info_val`` given.
        DataError
            When ``X`` or ``Y`` has the wrong shape or non-finite values.
        PredictorCallError, PredictorReturnTypeError
            When the predictor fails or returns something other than ``(n, n_classes)`` probabilities.

        Examples
        --------
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation='softmax')])
        >>> cem = CEM(model, mode='PP', shape=(1, 2), max_iterations=50, c_steps=2, no_info_val=0.0)
        >>> exp = cem.explain(np.array([[0.5, -0.2], [1.0, 1.0]], 'float32'))
        >>> exp.found.shape, exp.X_proba.shape
        ((2,), (2, 2))
        """
        result = self._attack(X, Y, verbose=verbose, progress=progress, cancel=cancel)
        X = result["X"]
        n = len(X)
        single = n == 1
        found = result["found"]
        x_pred = np.argmax(result["X_proba"], axis=1)
        exp_pred = np.where(found, np.argmax(np.nan_to_num(result["proba"], nan=-1.0), axis=1), -1)
        data = copy.deepcopy(DEFAULT_DATA_CEM)
        if single:
            data[self.mode] = result["best"] if found[0] else None
            data[f"{self.mode}_pred"] = int(exp_pred[0]) if found[0] else None
            data["X_pred"] = int(x_pred[0])
        else:
            data[self.mode] = result["best"]
            data[f"{self.mode}_pred"] = exp_pred.astype(np.int64)
            data["X_pred"] = x_pred.astype(np.int64)
        data["grads_graph"] = result["grads_graph"]
        data["grads_num"] = result["grads_num"]
        data["X"] = X
        data["X_proba"] = result["X_proba"].astype(np.float32)
        data[f"{self.mode}_proba"] = result["proba"]
        data["found"] = found
        data["delta"] = (result["best"] - X).astype(np.float32)
        data["target"] = np.argmax(result["onehot"], axis=1).astype(np.int64)
        data["no_info_val"] = result["no_info"]
        data["best_c"] = result["best_c"]
        return Explanation(meta=self.meta, data=data)
