"""What every detector shares: metadata, the threshold, and the prediction payload.

Detectors follow the reference contract: ``predict`` returns ``{'meta': {...}, 'data': {...}}``
with ``instance_score``, ``feature_score`` and ``is_outlier`` (or ``is_adversarial``) as numpy
arrays. The payload is built here, in one place, so every detector returns the same shape.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from engine.errors import NotFittedError
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


class BaseDetector:
    """Metadata every detector carries.

    Subclasses set the class attributes ``detector_type`` ('outlier' or 'adversarial') and
    ``default_data_type``; the constructor's ``data_type`` overrides the latter.
    """

    detector_type: str = "outlier"
    default_data_type: str | None = None
    online: bool = False

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={getattr(self, 'threshold', None)!r})"


class ThresholdMixin:
    """The threshold as a percentile of scores on data considered normal.

    The detector keeps ``threshold`` (a float, or an array for feature-wise thresholds) under the
    reference's name, so code written for the reference reads and sets it the same way.
    """

    threshold = None

    @staticmethod
    def percentile_threshold(scores: np.ndarray, threshold_perc: float) -> float:
        """The ``threshold_perc`` percentile of ``scores`` (ignoring nothing: scores must be finite)."""
        threshold_perc = check_percentile(threshold_perc, "threshold_perc")
        return float(np.percentile(np.asarray(scores, dtype=np.float64), threshold_perc))

    def _require_threshold(self) -> None:
        if self.threshold is None:
            raise NotFittedError(
                f"{type(self).__name__} has no threshold yet: call infer_threshold(X, threshold_perc) on data "
                "you consider normal, or set detector.threshold directly."
            )


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
