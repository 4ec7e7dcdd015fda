"""The engine's contract: detector and explainer bases, the threshold, and the prediction payload.

:class:`BaseDetector` and :class:`Explainer` are abstract bases (as alibi-detect's and alibi's):
they name the methods every detector (``fit``, ``score``, ``predict``) and every explainer
(``explain``, ``meta``) has, give both scikit-learn's ``get_params``/``set_params``, and give
detectors ``save``/``load`` once. :class:`ThresholdMixin` holds the one percentile threshold rule
(:func:`percentile_threshold`).

Detectors follow the reference contract: ``predict`` returns ``{'meta': {...}, 'data': {...}}``
with ``instance_score``, ``feature_score`` and ``is_outlier`` (or ``is_adversarial``) as numpy
arrays. The payload is built here, in one place, so every detector returns the same shape.
"""

from __future__ import annotations

import abc
import copy
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ArchiveError, NotFittedError
from engine.validation import check_percentile
from engine.version import __version__


def outlier_prediction_dict(
    meta: dict,
    *,
    is_outlier: np.ndarray,
    instance_score: np.ndarray | None = None,
    feature_score: np.ndarray | None = None,
) -> dict:
    """Build the outlier payload ``{'meta', 'data': {'instance_score', 'feature_score', 'is_outlier'}}``.

    Examples
    --------
    >>> out = outlier_prediction_dict({'name': 'x'}, is_outlier=np.array([0, 1]))
    >>> sorted(out['data'])
    ['feature_score', 'instance_score', 'is_outlier']
    """
    return {
        "meta": copy.deepcopy(meta),
        "data": {
            "instance_score": instance_score,
            "feature_score": feature_score,
            "is_outlier": np.asarray(is_outlier).astype(int),
        },
    }


def adversarial_prediction_dict(
    meta: dict, *, is_adversarial: np.ndarray, instance_score: np.ndarray | None = None
) -> dict:
    """Build the adversarial payload ``{'meta', 'data': {'instance_score', 'is_adversarial'}}``."""
    return {
        "meta": copy.deepcopy(meta),
        "data": {"instance_score": instance_score, "is_adversarial": np.asarray(is_adversarial).astype(int)},
    }


class ParamsMixin:
    """scikit-learn's ``get_params`` / ``set_params``, read from the constructor's signature.

    The parameters are the names of ``__init__``'s arguments (not ``*args``/``**kwargs``); each is
    stored under its own name, so ``get_params`` reads the attributes and ``set_params`` writes
    them. A subclass whose parameters need more than an assignment (a predictor to check, a
    layout to recompute) overrides :meth:`_set_param`.

    Examples
    --------
    >>> class Model(ParamsMixin):
    ...     def __init__(self, alpha=1.0, beta=None):
    ...         self.alpha, self.beta = alpha, beta
    >>> Model(alpha=2.0).set_params(beta=3).get_params()
    {'alpha': 2.0, 'beta': 3}
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name, p in signature.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their current values.

        With ``deep=True`` the parameters of nested objects that have ``get_params`` are added as
        ``'<name>__<param>'``, as scikit-learn does.
        """
        params: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name, None)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update({f"{name}__{key}": item for key, item in value.get_params().items()})
            params[name] = value
        return params

    def set_params(self, **params: Any):
        """Set constructor parameters by name and return ``self``.

        Raises
        ------
        ValueError
            When a name is not a parameter of the constructor (nothing is changed then).

        Examples
        --------
        >>> detector.set_params(threshold=0.5)  # doctest: +SKIP
        """
        valid = self._param_names()
        unknown = sorted(name for name in params if name not in valid)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter(s) {unknown}; valid parameters are {valid}.")
        for name, value in params.items():
            self._set_param(name, value)
        return self

    def _set_param(self, name: str, value: Any) -> None:
        setattr(self, name, value)


class BaseDetector(ParamsMixin, abc.ABC):
    """The contract every detector follows, and the metadata it carries.

    A detector is built from its parameters (nothing is learned in ``__init__``), learns in
    :meth:`fit` (learned attributes end in ``_`` and are created there), scores with
    :meth:`score` and returns the reference's payload from :meth:`predict`. It saves to and loads
    from a Lantern archive (:mod:`engine.saving`) through :meth:`save` and :meth:`load`, written
    here once. Subclasses set the class attributes ``detector_type`` ('outlier' or 'adversarial')
    and ``default_data_type``; the constructor's ``data_type`` overrides the latter.
    """

    detector_type: str = "outlier"
    default_data_type: str | None = None
    online: bool = False

    @abc.abstractmethod
    def fit(self, X: np.ndarray, *args: Any, **kwargs: Any):
        """Learn from (mostly normal) data."""

    @abc.abstractmethod
    def score(self, X: np.ndarray, *args: Any, **kwargs: Any):
        """Scores of ``X`` (higher = more unusual)."""

    @abc.abstractmethod
    def predict(self, X: np.ndarray, *args: Any, **kwargs: Any) -> dict:
        """``{'meta': {...}, 'data': {...}}`` with scores and flags of ``X``."""

    @property
    def meta(self) -> dict[str, Any]:
        """Name, detector type, data type, online flag and engine version."""
        return {
            "name": type(self).__name__,
            "detector_type": self.detector_type,
            "data_type": getattr(self, "data_type", None) or self.default_data_type,
            "online": self.online,
            "version": __version__,
        }

    def save(self, path) -> Path:
        """Write the detector to a Lantern archive at ``path`` and return the path.

        See :func:`engine.saving.save_detector`; the feature names the detector was fitted on
        (``feature_names_``) are recorded when it has them.

        Examples
        --------
        >>> detector.save('detector.lantern')  # doctest: +SKIP
        """
        from engine.saving import save_detector

        return save_detector(self, path)

    @classmethod
    def load(cls, source):
        """Load a detector written by :meth:`save` (a path, bytes or a binary file).

        Raises
        ------
        ArchiveError
            When the file is not a valid archive, or holds another class than ``cls``.

        Examples
        --------
        >>> detector = OutlierAEGMM.load('detector.lantern')  # doctest: +SKIP
        """
        from engine.saving import load_detector

        detector = load_detector(source)
        if not isinstance(detector, cls):
            article = "an" if cls.__name__[:1] in "AEIOU" else "a"
            raise ArchiveError(f"the archive holds a {type(detector).__name__}, not {article} {cls.__name__}.")
        return detector

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={getattr(self, 'threshold', None)!r})"


def percentile_threshold(scores, percentile: float, axis: int | None = None, dtype=np.float64):
    """The ``percentile`` of ``scores``: the threshold under which ``percentile`` % of them lie.

    Scores are read as ``dtype`` (float64 by default; ``None`` keeps their own dtype, so float32
    scores are interpolated in float32). With ``axis=None`` the result is a float; with an axis
    (e.g. ``axis=0`` for one threshold per feature column) a float64 array.

    Examples
    --------
    >>> percentile_threshold([1.0, 2.0, 3.0, 4.0, 5.0], 50)
    3.0
    >>> percentile_threshold(np.array([[0., 10.], [1., 20.], [2., 30.]]), 50, axis=0)
    array([ 1., 20.])
    >>> raw = np.array([[0.1], [0.2], [0.7]], dtype=np.float32)
    >>> percentile_threshold(raw, 75, axis=0, dtype=None) == np.percentile(raw, 75, axis=0)
    array([ True])
    """
    percentile = check_percentile(percentile, "threshold_perc")
    value = np.percentile(np.asarray(scores, dtype=dtype), percentile, axis=axis)
    return float(value) if axis is None else np.asarray(value, dtype=np.float64)


class ThresholdMixin(abc.ABC):
    """The threshold as a percentile of scores on data considered normal.

    The detector keeps ``threshold`` (a float, or an array for feature-wise thresholds) under the
    reference's name, so code written for the reference reads and sets it the same way. Every
    percentile threshold in the engine is computed by :meth:`threshold_at`
    (:func:`percentile_threshold`); code outside a detector (a slider on a page) calls the same
    function.
    """

    threshold = None

    @abc.abstractmethod
    def infer_threshold(self, X: np.ndarray, *args: Any, **kwargs: Any) -> None:
        """Set ``threshold`` from the scores of ``X``, data considered normal."""

    @staticmethod
    def threshold_at(scores, percentile: float, axis: int | None = None, dtype=np.float64):
        """The ``percentile`` of ``scores`` (see :func:`percentile_threshold`).

        Examples
        --------
        >>> ThresholdMixin.threshold_at([0.0, 1.0, 2.0], 100)
        2.0
        >>> ThresholdMixin.threshold_at(np.array([[0.0, 4.0], [2.0, 8.0]]), 50, axis=0)
        array([1., 6.])
        """
        return percentile_threshold(scores, percentile, axis=axis, dtype=dtype)

    @staticmethod
    def percentile_threshold(scores: np.ndarray, threshold_perc: float) -> float:
        """The ``threshold_perc`` percentile of ``scores`` (ignoring nothing: scores must be finite)."""
        return percentile_threshold(scores, threshold_perc)

    def _require_threshold(self) -> None:
        if self.threshold is None:
            raise NotFittedError(
                f"{type(self).__name__} has no threshold yet: call infer_threshold(X, threshold_perc) on data "
                "you consider normal, or set detector.threshold directly."
            )


class Explainer(ParamsMixin, abc.ABC):
    """The contract every explainer follows (as alibi's ``Explainer``).

    An explainer is built from its parameters and the model it explains, may learn from training
    data in ``fit`` (learned attributes end in ``_``), and returns an
    :class:`~engine.explanation.Explanation` from :meth:`explain`, whose ``meta`` is
    :attr:`meta`.
    """

    @property
    @abc.abstractmethod
    def meta(self) -> dict:
        """Name, type, explanations, parameters and engine version."""

    @abc.abstractmethod
    def explain(self, X: np.ndarray, *args: Any, **kwargs: Any):
        """Explain the instance(s) ``X``."""


def check_is_fitted(estimator, attributes: str | tuple[str, ...], hint: str = "call fit(X) first") -> None:
    """Raise :class:`NotFittedError` unless every learned attribute is set.

    Examples
    --------
    >>> class Model: coef_ = None
    >>> check_is_fitted(Model(), 'coef_')
    Traceback (most recent call last):
    ...
    engine.errors.NotFittedError: Model is not fitted: call fit(X) first.
    """
    names = (attributes,) if isinstance(attributes, str) else attributes
    if any(getattr(estimator, name, None) is None for name in names):
        raise NotFittedError(f"{type(estimator).__name__} is not fitted: {hint}.")
