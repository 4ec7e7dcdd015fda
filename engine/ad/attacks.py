"""Gradient attacks on Keras classifiers: FGSM and PGD, in the L∞ and L2 norms.

Both attacks perturb an input ``x0`` to raise the classifier's loss on its label (untargeted) or to
lower its loss on a chosen target class (targeted), within an ``epsilon`` ball around ``x0`` and
inside the valid data range ``[clip_min, clip_max]``:

- **FGSM** (Goodfellow et al., 2015): one step of size ``epsilon`` along the sign of the gradient
  (L∞) or along the unit-L2 gradient (L2).
- **PGD** (Madry et al., 2018): ``steps`` steps of size ``step_size`` from a random start in the
  ball, each followed by projection onto the ball and clipping to the data range.

The loss is the cross-entropy ``-log p_label(x)``. The classifier may output softmax
probabilities, logits, or one sigmoid column (binary): see
:func:`engine.classifiers.output_kind`. When ``y`` is not given the classifier's own predictions
on the clean inputs are the labels, so no ground truth leaks into the attack.

Attacks run in compiled batches (``tf.function`` over a fixed-rank ``None``-batch signature;
``epsilon``, ``step_size`` and ``steps`` are tensors, so changing them does not retrace within a call).
:func:`harmfulness` tells whether an attack changed the classifier's prediction.

Examples
--------
>>> import numpy as np
>>> from engine.classifiers import build_classifier
>>> net = build_classifier(4, 3, seed=0)
>>> X = np.random.default_rng(0).uniform(size=(8, 4)).astype('float32')
>>> X_adv = pgd(net, X, epsilon=0.1, steps=5, clip_min=0.0, clip_max=1.0, seed=0)
>>> bool(np.abs(X_adv - X).max() <= 0.1 + 1e-6)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from engine.classifiers import batch_slices, log_probabilities, output_kind, predict_proba
from engine.errors import DataError
from engine.validation import as_float_array

__all__ = ["fgsm", "pgd", "attack", "harmfulness", "AttackResult", "perturbation_norms"]

_TINY = 1e-12


def _norm_name(norm) -> str:
    text = str(norm).lower().lstrip("l")
    if text in ("inf", "infinity") or norm == np.inf:
        return "inf"
    if text == "2":
        return "2"
    raise ValueError(f"norm must be 'inf' (L∞) or '2' (L2), got {norm!r}.")


def _positive(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a positive number, got {value!r}.") from exc
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}.")
    return value


def _input_shape(model: keras.Model):
    inputs = getattr(model, "inputs", None)
    if inputs:
        return tuple(inputs[0].shape[1:])
    return None


def _check_X(model: keras.Model, X) -> np.ndarray:
    X = as_float_array(X)
    expected = _input_shape(model)
    if expected is not None and (len(expected) != X.ndim - 1 or any(
            e is not None and e != g for e, g in zip(expected, X.shape[1:]))):
        raise DataError(f"X has instances of shape {X.shape[1:]}, but the classifier takes {expected}.")
    return X


def _bounds(value, X: np.ndarray, default: float) -> np.ndarray:
    """Broadcast a clip bound (scalar, per-feature array or None) to X's instance shape."""
    if value is None:
        return np.full(X.shape[1:], default, dtype=np.float32)
    try:
        return np.broadcast_to(np.asarray(value, dtype=np.float32), X.shape[1:]).copy()
    except ValueError as exc:
        raise ValueError(
            f"clip bound of shape {np.shape(value)} does not fit instances of shape {X.shape[1:]}."
        ) from exc


def _class_codes(values, n_rows: int, n_classes: int, name: str) -> np.ndarray:
    codes = np.asarray(values)
    if codes.ndim == 0:
        codes = np.full(n_rows, codes)
    if codes.shape != (n_rows,) or codes.dtype.kind not in "iu":
        raise DataError(
            f"{name} must be one integer class code or one per row ({n_rows}), got {codes.shape} {codes.dtype}."
        )
    if codes.min() < 0 or codes.max() >= n_classes:
        raise DataError(f"{name} holds codes outside 0..{n_classes - 1} (the classifier's classes).")
    return codes.astype(np.int32)


def perturbation_norms(X_clean, X_adv) -> tuple[np.ndarray, np.ndarray]:
    """Per-instance L∞ and L2 norms of ``X_adv - X_clean``."""
    delta = (np.asarray(X_adv, np.float64) - np.asarray(X_clean, np.float64)).reshape(len(X_clean), -1)
    return np.abs(delta).max(axis=1), np.sqrt((delta ** 2).sum(axis=1))


def _make_attack_step(model: keras.Model, kind: str, norm: str, targeted: bool, instance_shape: tuple):
    """A compiled ``run(x0, labels, x_start, lo, hi, epsilon, step_size, steps) -> x_adv``."""
    reduce_axes = list(range(1, 1 + len(instance_shape)))

    def per_instance_l2(t):
        return tf.sqrt(tf.reduce_sum(tf.square(t), axis=reduce_axes, keepdims=True))

    def project(delta, epsilon):
        if norm == "inf":
            return tf.clip_by_value(delta, -epsilon, epsilon)
        return delta * tf.minimum(1.0, epsilon / (per_instance_l2(delta) + _TINY))

    spec = tf.TensorSpec((None,) + instance_shape, tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int32), spec, spec, spec,
                                  tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.float32),
                                  tf.TensorSpec((), tf.int32)])
    def run(x0, labels, x_start, lo, hi, epsilon, step_size, steps):
        x = x_start
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logp = log_probabilities(model(x, training=False), kind)
                label_logp = tf.gather(logp, labels, axis=1, batch_dims=1)
                # Ascend this objective: the label's loss (untargeted) or the target's log-probability.
                objective = tf.reduce_sum(label_logp if targeted else -label_logp)
            grad = tape.gradient(objective, x)
            if norm == "inf":
                direction = tf.sign(grad)
            else:
                direction = grad / (per_instance_l2(grad) + _TINY)
            x = x0 + project(x + step_size * direction - x0, epsilon)
            x = tf.clip_by_value(x, lo, hi)
        return x

    return run


def _random_start(rng: np.random.Generator, x0: np.ndarray, epsilon: float, norm: str) -> np.ndarray:
    if norm == "inf":
        return x0 + rng.uniform(-epsilon, epsilon, size=x0.shape).astype(np.float32)
    flat = rng.standard_normal((len(x0), int(np.prod(x0.shape[1:]))))
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) + _TINY
    radius = epsilon * rng.uniform(size=(len(x0), 1)) ** (1.0 / flat.shape[1])
    return x0 + (flat * radius).reshape(x0.shape).astype(np.float32)


def _run_attack(model, X, y, *, epsilon, step_size, steps, norm, targeted, target, random_start,
                clip_min, clip_max, seed, batch_size, output) -> np.ndarray:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a Keras classifier (keras.Model), got {type(model).__name__}.")
    X = _check_X(model, X)
    norm = _norm_name(norm)
    epsilon = _positive(epsilon, "epsilon")
    step_size = _positive(step_size, "step_size")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    kind = output or output_kind(model, X)
    n_classes = max(2, int(np.asarray(model(X[:1], training=False)).shape[-1]))
    lo, hi = _bounds(clip_min, X, -np.inf), _bounds(clip_max, X, np.inf)
    if np.any(lo > hi):
        raise ValueError("clip_min must not exceed clip_max.")
    if targeted:
        if target is None:
            raise ValueError("a targeted attack needs target=<class code or one code per row>.")
        labels = _class_codes(target, len(X), n_classes, "target")
    elif y is not None:
        labels = _class_codes(y, len(X), n_classes, "y")
    else:
        labels = predict_proba(model, X, batch_size=batch_size, kind=kind).argmax(axis=1).astype(np.int32)
    run = _make_attack_step(model, kind, norm, bool(targeted), tuple(X.shape[1:]))
    rng = np.random.default_rng(seed)
    out = np.empty_like(X)
    for part in batch_slices(len(X), batch_size):
        x0 = X[part]
        # Inputs already outside the valid range keep their own value as the bound, so clipping never
        # moves a coordinate further than epsilon from where it started.
        lo_b, hi_b = np.minimum(lo, x0), np.maximum(hi, x0)
        start = np.clip(_random_start(rng, x0, epsilon, norm), lo_b, hi_b) if random_start else x0
        out[part] = run(x0, labels[part], start, lo_b, hi_b, np.float32(epsilon), np.float32(step_size),
                        np.int32(steps)).numpy()
    return out


def fgsm(
    model: keras.Model,
    X,
    y=None,
    *,
    epsilon: float,
    norm: str = "inf",
    targeted: bool = False,
    target=None,
    clip_min=None,
    clip_max=None,
    batch_size: int = 256,
    output: str | None = None,
) -> np.ndarray:
    """Fast gradient (sign) method: one step of size ``epsilon`` that raises the classifier's loss.

    Parameters
    ----------
    model : keras.Model
        The classifier attacked (softmax probabilities, logits or one sigmoid column).
    X : array-like, shape (n, ...)
        Clean inputs, as the classifier takes them.
    y : array-like of int, optional
        Labels to move away from (untargeted); the classifier's predictions on ``X`` by default.
    epsilon : float
        Size of the perturbation: its L∞ norm (``norm='inf'``) or L2 norm (``norm='2'``).
    norm : {'inf', '2'}
        The norm of the step and of the ball.
    targeted : bool
        Move towards ``target`` instead of away from ``y``.
    target : int or array-like of int, optional
        Target class per row (or one for all), required when ``targeted``.
    clip_min, clip_max : float or array-like, optional
        Valid data range (scalar or per-feature); the result is clipped into it.
    batch_size : int
        Rows per compiled step (memory is bounded by :data:`engine.classifiers.MAX_INFERENCE_ROWS`).
    output : {'probabilities', 'logits'}, optional
        What the model returns; detected when omitted.

    Returns
    -------
    numpy.ndarray
        Adversarial inputs, same shape as ``X``, float32.

    Examples
    --------
    >>> from engine.classifiers import build_classifier
    >>> X = np.full((2, 4), 0.5, 'float32')
    >>> X_adv = fgsm(build_classifier(4, 2, seed=0), X, epsilon=0.1, clip_min=0, clip_max=1)
    >>> float(np.abs(X_adv - X).max()) <= 0.1 + 1e-6
    True
    """
    return _run_attack(model, X, y, epsilon=epsilon, step_size=epsilon, steps=1, norm=norm, targeted=targeted,
                       target=target, random_start=False, clip_min=clip_min, clip_max=clip_max, seed=None,
                       batch_size=batch_size, output=output)


def pgd(
    model: keras.Model,
    X,
    y=None,
    *,
    epsilon: float,
    step_size: float | None = None,
    steps: int = 10,
    norm: str = "inf",
    targeted: bool = False,
    target=None,
    random_start: bool = True,
    clip_min=None,
    clip_max=None,
    seed: int | None = None,
    batch_size: int = 256,
    output: str | None = None,
) -> np.ndarray:
    """Projected gradient descent: ``steps`` gradient steps, each projected back into the ``epsilon`` ball.

    Parameters
    ----------
    model, X, y, epsilon, norm, targeted, target, clip_min, clip_max, batch_size, output
        As in :func:`fgsm`.
    step_size : float, optional
        Size of each step (L∞ or L2 as ``norm``); ``2.5 * epsilon / steps`` by default, enough to
        cross the ball and come back.
    steps : int
        Number of steps.
    random_start : bool
        Start from a uniformly random point of the ball (clipped to the data range).
    seed : int, optional
        Seed of the random start (a local generator; no global seed is touched).

    Returns
    -------
    numpy.ndarray
        Adversarial inputs, same shape as ``X``, float32, with ``||X_adv - X|| <= epsilon`` per row
        and inside ``[clip_min, clip_max]``.

    Examples
    --------
    >>> from engine.classifiers import build_classifier
    >>> X = np.full((2, 4), 0.5, 'float32')
    >>> X_adv = pgd(build_classifier(4, 2, seed=0), X, epsilon=0.3, norm='2', steps=3, seed=0)
    >>> bool(np.linalg.norm(X_adv - X, axis=1).max() <= 0.3 + 1e-5)
    True
    """
    steps = int(steps)
    if step_size is None:
        step_size = 2.5 * _positive(epsilon, "epsilon") / max(steps, 1)
    return _run_attack(model, X, y, epsilon=epsilon, step_size=step_size, steps=steps, norm=norm,
                       targeted=targeted, target=target, random_start=random_start, clip_min=clip_min,
                       clip_max=clip_max, seed=seed, batch_size=batch_size, output=output)


@dataclass
class AttackResult:
    """Clean and adversarial inputs with the classifier's predictions on both.

    Attributes
    ----------
    X_clean, X_adv : numpy.ndarray
        The inputs before and after the attack.
    proba_clean, proba_adv : numpy.ndarray, shape (n, k)
        The classifier's class probabilities on each.
    pred_clean, pred_adv : numpy.ndarray of int, shape (n,)
        Its predicted classes.
    harmful : numpy.ndarray of bool, shape (n,)
        Whether the attack changed the prediction (``pred_adv != pred_clean``).
    linf, l2 : numpy.ndarray, shape (n,)
        Norms of each perturbation.
    y : numpy.ndarray of int, optional
        True labels, when known (enables the accuracies).
    params : dict
        The attack and its settings.
    """

    X_clean: np.ndarray
    X_adv: np.ndarray
    proba_clean: np.ndarray
    proba_adv: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray
    harmful: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    y: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def harmful_rate(self) -> float:
        """Share of instances whose prediction the attack changed."""
        return float(np.mean(self.harmful)) if len(self.harmful) else 0.0

    @property
    def accuracy_clean(self) -> float | None:
        return None if self.y is None else float(np.mean(self.pred_clean == self.y))

    @property
    def accuracy_adv(self) -> float | None:
        return None if self.y is None else float(np.mean(self.pred_adv == self.y))

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-safe: rates, accuracies, mean/max perturbation norms, settings."""
        return {
            **self.params,
            "n": int(len(self.harmful)),
            "harmful_rate": self.harmful_rate,
            "accuracy_clean": self.accuracy_clean,
            "accuracy_adv": self.accuracy_adv,
            "linf_mean": float(np.mean(self.linf)) if len(self.linf) else 0.0,
            "linf_max": float(np.max(self.linf)) if len(self.linf) else 0.0,
            "l2_mean": float(np.mean(self.l2)) if len(self.l2) else 0.0,
            "l2_max": float(np.max(self.l2)) if len(self.l2) else 0.0,
        }


def harmfulness(model: keras.Model, X_clean, X_adv, y=None, *, batch_size: int = 1024,
                params: dict | None = None) -> AttackResult:
    """Did the attack change the classifier's prediction? Predictions on clean and attacked inputs.

    Examples
    --------
    >>> from engine.classifiers import build_classifier
    >>> net = build_classifier(4, 2, seed=0); X = np.zeros((3, 4), 'float32')
    >>> harmfulness(net, X, X).harmful_rate
    0.0
    """
    X_clean = _check_X(model, X_clean)
    X_adv = as_float_array(X_adv, name="X_adv")
    if X_adv.shape != X_clean.shape:
        raise DataError(f"X_adv has shape {X_adv.shape} but X_clean has {X_clean.shape}; pass matching rows.")
    kind = output_kind(model, X_clean)
    proba_clean = predict_proba(model, X_clean, batch_size, kind=kind)
    proba_adv = predict_proba(model, X_adv, batch_size, kind=kind)
    pred_clean, pred_adv = proba_clean.argmax(axis=1), proba_adv.argmax(axis=1)
    if y is not None:
        y = _class_codes(y, len(X_clean), proba_clean.shape[1], "y").astype(np.int64)
    linf, l2 = perturbation_norms(X_clean, X_adv)
    return AttackResult(X_clean, X_adv, proba_clean, proba_adv, pred_clean, pred_adv, pred_adv != pred_clean,
                        linf, l2, y, dict(params or {}))


def attack(model: keras.Model, X, y=None, *, method: str = "pgd", **kwargs) -> AttackResult:
    """Run :func:`fgsm` or :func:`pgd` and measure its :func:`harmfulness` in one call.

    ``y`` (true labels, optional) is used for the accuracies only; the attack itself moves away from
    the classifier's own predictions unless ``labels_from_y=True`` is passed.

    Examples
    --------
    >>> from engine.classifiers import build_classifier
    >>> res = attack(build_classifier(4, 2, seed=0), np.zeros((3, 4), 'float32'), method='fgsm', epsilon=0.5)
    >>> sorted(res.summary())[:3]
    ['accuracy_adv', 'accuracy_clean', 'epsilon']
    """
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"method must be 'fgsm' or 'pgd', got {method!r}.")
    labels_from_y = bool(kwargs.pop("labels_from_y", False))
    fn = fgsm if method == "fgsm" else pgd
    X_adv = fn(model, X, y if labels_from_y else None, **kwargs)
    scalars = (int, float, str, bool, type(None))
    params = {"method": method, **{k: v for k, v in kwargs.items() if isinstance(v, scalars)}}
    return harmfulness(model, X, X_adv, y, batch_size=kwargs.get("batch_size", 1024), params=params)
