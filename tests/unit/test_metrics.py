"""Detection quality (engine.metrics): 0/1 labels from a label column, and the binary report."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import DataError
from engine.metrics import BinaryReport, binary_labels, binary_report


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([0, 1, 1, 0], [0, 1, 1, 0]),
        ([0.0, 2.5, -1.0], [0, 1, 1]),
        ([True, False], [1, 0]),
        (["normal", "anomaly", "Outlier", "ATTACK", "yes", "no", "1", "0", "fraud", "adversarial"],
         [0, 1, 1, 1, 1, 0, 1, 0, 1, 1]),
        (np.array(["b'x'", "true", "False"]), [0, 1, 0]),
    ],
    ids=["ints", "floats", "bools", "words", "numpy-str"],
)
def test_binary_labels(labels, expected):
    out = binary_labels(labels)
    assert out.dtype.kind == "i" and out.tolist() == expected


def test_binary_labels_with_missing_numbers_is_a_data_error():
    with pytest.raises(DataError, match="the label column has missing values"):
        binary_labels([0.0, np.nan, 1.0])


def test_report_counts_match_a_hand_computation():
    y_true = [1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 0, 1, 0, 0, 0, 0]
    report = binary_report(y_true, y_pred)
    assert isinstance(report, BinaryReport)
    # tp=2, fn=1, fp=1, tn=4
    assert report.precision == pytest.approx(2 / 3)
    assert report.recall == pytest.approx(2 / 3)
    assert report.f1 == pytest.approx(2 / 3)
    assert report.accuracy == pytest.approx(6 / 8)
    np.testing.assert_array_equal(report.confusion, [[4, 1], [1, 2]])
    assert report.roc_auc is None and report.fpr is None and report.average_precision is None


def test_report_with_scores_has_roc_and_pr_curves():
    y_true = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    report = binary_report(y_true, scores > 0.5, scores=scores)
    assert report.roc_auc == pytest.approx(8 / 9)  # one of nine positive/negative pairs is misordered
    assert report.fpr[0] == 0 and report.tpr[-1] == 1 and len(report.fpr) == len(report.tpr)
    assert np.all(np.diff(report.fpr) >= 0)
    assert 0 < report.average_precision <= 1
    assert report.pr_precision[-1] == 1 and report.pr_recall[-1] == 0


def test_perfect_scores_give_auc_one():
    report = binary_report([0, 1, 1, 0], [0, 1, 0, 0], scores=[0.1, 0.9, 0.4, 0.2])
    assert report.roc_auc == 1.0 and report.average_precision == 1.0
    assert report.f1 == pytest.approx(2 / 3)


def test_single_class_truth_has_no_curves_and_no_division_warnings():
    report = binary_report([0, 0, 0], [0, 0, 0], scores=[0.1, 0.2, 0.3])
    assert report.precision == 0 and report.recall == 0 and report.f1 == 0 and report.accuracy == 1
    assert report.roc_auc is None and report.fpr is None
    np.testing.assert_array_equal(report.confusion, [[3, 0], [0, 0]])


def test_boolean_predictions_are_accepted():
    report = binary_report(np.array([True, False]), np.array([True, True]))
    np.testing.assert_array_equal(report.confusion, [[0, 1], [0, 1]])


def test_report_agrees_with_scikit_learn_on_random_predictions():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    for positives in (0.02, 0.3, 0.9):
        y_true = rng.random(5_000) < positives
        y_pred = rng.random(5_000) < 0.2
        report = binary_report(y_true, y_pred)
        assert report.precision == pytest.approx(skm.precision_score(y_true, y_pred, zero_division=0))
        assert report.recall == pytest.approx(skm.recall_score(y_true, y_pred, zero_division=0))
        assert report.f1 == pytest.approx(skm.f1_score(y_true, y_pred, zero_division=0))
        assert report.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
        np.testing.assert_array_equal(report.confusion, skm.confusion_matrix(y_true, y_pred, labels=[0, 1]))


def test_labels_and_predictions_of_different_lengths_are_a_data_error():
    with pytest.raises(DataError, match="3 labels but 2 predictions"):
        binary_report([0, 1, 1], [0, 1])
