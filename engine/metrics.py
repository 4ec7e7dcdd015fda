"""Detection quality from labels and scores: precision, recall, F1, confusion matrix, ROC and PR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from engine.errors import DataError


@dataclass
class BinaryReport:
    """Quality of binary predictions against ground truth; curves are present when both classes occur."""

    precision: float
    recall: float
    f1: float
    accuracy: float
    confusion: np.ndarray
    roc_auc: float | None = None
    fpr: np.ndarray | None = None
    tpr: np.ndarray | None = None
    average_precision: float | None = None
    pr_precision: np.ndarray | None = None
    pr_recall: np.ndarray | None = None


def binary_labels(labels) -> np.ndarray:
    """Turn a label column into 0/1 (1 = outlier / positive).

    Numbers: non-zero is positive. Text: values such as 'outlier', 'anomaly', 'attack', 'yes', 'true', '1'.

    Examples
    --------
    >>> binary_labels(['normal', 'anomaly']).tolist()
    [0, 1]
    """
    values = np.asarray(labels)
    if values.dtype.kind in "biuf":
        if np.isnan(values.astype(float)).any():
            raise DataError("the label column has missing values; fill or drop them to compute metrics.")
        return (values.astype(float) != 0).astype(int)
    text = np.char.lower(values.astype(str))
    positive = {"1", "true", "yes", "outlier", "anomaly", "anomalous", "attack", "abnormal", "fraud", "adversarial"}
    return np.isin(text, list(positive)).astype(int)


def binary_report(y_true, y_pred, scores=None) -> BinaryReport:
    """Precision, recall, F1, accuracy and confusion matrix; ROC and PR when ``scores`` are given.

    Examples
    --------
    >>> report = binary_report([0, 1, 1, 0], [0, 1, 0, 0], scores=[0.1, 0.9, 0.4, 0.2])
    >>> round(report.f1, 3), report.roc_auc
    (0.667, 1.0)
    """
    y_true = np.asarray(y_true).astype(bool)  # non-zero = positive
    y_pred = np.asarray(y_pred).astype(bool)
    if y_true.shape != y_pred.shape:
        raise DataError(f"{len(y_true)} labels but {len(y_pred)} predictions; they must match one to one.")
    # One pass of counting instead of four scikit-learn scorers (each re-validates the labels): the
    # threshold slider recomputes this on every move, on up to 200,000 rows.
    tn, fp, fn, tp = np.bincount(2 * y_true + y_pred, minlength=4).tolist()
    report = BinaryReport(
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        accuracy=(tp + tn) / len(y_true) if len(y_true) else 0.0,
        confusion=np.array([[tn, fp], [fn, tp]]),
    )
    if scores is not None and 0 < y_true.sum() < len(y_true):
        scores = np.asarray(scores, dtype=float)
        report.fpr, report.tpr, _ = skm.roc_curve(y_true, scores)
        report.roc_auc = float(skm.roc_auc_score(y_true, scores))
        report.pr_precision, report.pr_recall, _ = skm.precision_recall_curve(y_true, scores)
        report.average_precision = float(skm.average_precision_score(y_true, scores))
    return report


@dataclass
class ScoreCurves:
    """ROC and precision-recall curves of scores against labels, thinned for plotting.

    They do not depend on the threshold, so a page computes them once per set of scores.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    roc_auc: float
    precision: np.ndarray
    recall: np.ndarray
    average_precision: float


def _thin(*arrays: np.ndarray, max_points: int) -> tuple[np.ndarray, ...]:
    n = len(arrays[0])
    if n <= max_points:
        return arrays
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return tuple(a[keep] for a in arrays)


def score_curves(labels, scores, max_points: int = 500) -> ScoreCurves | None:
    """ROC and PR curves with AUC and average precision; None unless both classes occur.

    Examples
    --------
    >>> curves = score_curves([0, 1, 1, 0], [0.1, 0.9, 0.4, 0.2])
    >>> curves.roc_auc
    1.0
    """
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) != 2:
        return None
    scores = np.asarray(scores, dtype=float)
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    fpr, tpr = _thin(fpr, tpr, max_points=max_points)
    precision, recall = _thin(precision, recall, max_points=max_points)
    return ScoreCurves(fpr, tpr, float(skm.roc_auc_score(labels, scores)), precision, recall,
                       float(skm.average_precision_score(labels, scores)))
