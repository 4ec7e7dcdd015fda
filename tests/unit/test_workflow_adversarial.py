"""workflows.adversarial without Streamlit or training: preparation, thresholds, the example choice and its
sentence, and the export that joins back to the table."""

import numpy as np
import pandas as pd
import pytest

from engine.ad.attacks import AttackResult
from engine.errors import DataError, ModelError
from engine.training import TrainingHistory
from jobs.models import ClassifierAnswer, Network, UploadedAccuracyAnswer
from ui.own_model import OwnModel
from workflows import adversarial as wf


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(10, 20, size=n),
                          "note": [f"text {i}" for i in range(n)], "label": np.where(np.arange(n) % 2, "yes", "no")})
    frame.loc[3, "label"] = None  # a row without a label is not used, and the export says so
    return frame


def test_prepare_splits_the_labelled_rows_three_ways_and_scales_the_fit_rows_to_unit_range():
    frame = _table()
    data = wf.prepare(frame, ["a", "b", "label"], "label", None, 0.25, 10_000, 0, table_name="t")
    assert data.feature_names == ["a", "b"]  # the label is never a feature
    parts = [set(data.fit_rows.tolist()), set(data.calibration_rows.tolist()), set(data.test_rows.tolist())]
    assert sum(map(len, parts)) == 59 and set().union(*parts) == set(range(60)) - {3}
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(data.calibration_rows) == round(0.2 * (len(parts[0]) + len(parts[1])))
    assert data.X_fit.min() == pytest.approx(0.0) and data.X_fit.max() == pytest.approx(1.0)
    # Scaled rows map back to the table's values, row by row.
    assert np.allclose(data.raw(data.X_test), frame.loc[data.test_rows, ["a", "b"]].to_numpy(), atol=1e-5)
    assert data.frame is frame and data.label == "label"


@pytest.mark.parametrize("features, message", [([], "no feature columns"),
                                               ([f"c{i}" for i in range(1_001)], "at most 1,000")])
def test_prepare_refuses_bad_feature_choices_with_a_message(features, message):
    with pytest.raises(DataError, match=message):
        wf.prepare(_table(), features, "label", None, 0.25, 1000, 0)


def test_prepare_needs_enough_training_rows():
    with pytest.raises(DataError, match="at least 13"):
        wf.prepare(_table(16), ["a", "b"], "label", None, 0.25, 1000, 0)


def test_unit_range_uses_one_range_for_all_pixels():
    low, span = wf.unit_range(np.array([[0.0, 4.0], [2.0, 8.0]]), image=True)
    assert low.tolist() == [0.0, 0.0] and span.tolist() == [8.0, 8.0]


def test_threshold_is_the_engines_percentile_of_the_held_out_scores():
    scores = np.random.default_rng(1).exponential(size=500)
    assert wf.threshold(scores, 95.0) == pytest.approx(np.percentile(scores, 95.0))
    with pytest.raises(ValueError):
        wf.threshold(scores, 120.0)


def test_attack_positions_are_all_rows_or_a_sorted_sample():
    assert wf.attack_positions(4, 10, 0).tolist() == [0, 1, 2, 3]
    sample = wf.attack_positions(100, 10, 3)
    assert len(sample) == 10 == len(set(sample.tolist())) and (np.diff(sample) > 0).all()
    assert sample.tolist() == wf.attack_positions(100, 10, 3).tolist()


def test_the_classifier_view_comes_from_either_jobs_answer():
    data = wf.prepare(_table(), ["a", "b"], "label", None, 0.25, 1000, 0)
    answer = ClassifierAnswer(Network({}, {}), TrainingHistory(), 0.9, 0.8, {})
    trained = wf.view_classifier(answer, (data, "mlp-small"))
    assert trained.network == "MLP 128-64" and trained.test_accuracy == 0.8 and trained.own is None
    model = OwnModel("m.onnx", b"", "onnx", predictor=None)
    uploaded = wf.view_classifier(UploadedAccuracyAnswer(0.7, None), (data, model, None))
    assert uploaded.test_accuracy is None and uploaded.train_accuracy == 0.7 and uploaded.own is model
    assert uploaded.network.startswith("m.onnx: ONNX model") and uploaded.transfer_attack


# ------------------------------------------------------------------------------------------------ a made-up attack


def _run(pred_clean, pred_adv, student_adv, y, scores_adv, scores_clean=None, n_table=None):
    """An AttackRun over 3 classes with the given predictions: no model is trained."""
    n = len(y)
    n_table = n_table or n + 2
    frame = pd.DataFrame({"x": np.arange(n_table, dtype=float), "name": [f"r{i}" for i in range(n_table)],
                          "label": ["c0"] * n_table})

    def proba(pred, confidence=0.9):
        p = np.full((n, 3), (1 - confidence) / 2)
        p[np.arange(n), pred] = confidence
        return p

    data = wf.Prepared(
        table_name="t", feature_names=["x"], class_names=["zero", "one", "two"], image_shape=None,
        X_fit=np.zeros((1, 1)), y_fit=np.zeros(1, int), X_calibration=np.zeros((1, 1)), X_test=np.zeros((n, 1)),
        y_test=np.asarray(y), fit_rows=np.array([0]), calibration_rows=np.array([1]),
        test_rows=np.arange(2, 2 + n), low=np.zeros(1), span=np.ones(1), split="s", frame=frame, label="label")
    clf = wf.ClassifierRun(data, "net", 1.0, 1.0)
    det = wf.DetectorRun(clf, 2.0, "kld", TrainingHistory(), np.linspace(0, 1, 101), 0.9)
    pred_clean, pred_adv = np.asarray(pred_clean), np.asarray(pred_adv)
    result = AttackResult(np.zeros((n, 1)), np.full((n, 1), 0.1), proba(pred_clean), proba(pred_adv), pred_clean,
                          pred_adv, pred_adv != pred_clean, np.full(n, 0.1), np.full(n, 0.1), np.asarray(y))
    scores_clean = np.zeros(n) if scores_clean is None else np.asarray(scores_clean, float)
    return wf.AttackRun(det, np.arange(n), result, scores_clean, np.asarray(scores_adv, float), proba(pred_clean, 0.6),
                        proba(np.asarray(student_adv), 0.5), None, None, "PGD")


def test_the_example_group_holds_right_fooled_and_flagged_rows_with_plain_disagreement_first():
    #          row:     0  1  2  3  4  5
    run = _run(pred_clean=[0, 1, 2, 0, 1, 2], pred_adv=[1, 2, 2, 1, 0, 0], student_adv=[1, 1, 2, 0, 0, 2],
               y=[0, 1, 2, 0, 2, 2], scores_adv=[0.9, 0.9, 0.9, 0.9, 0.9, 0.1])
    det = wf.detection(run, 0.5)
    groups = wf.example_groups(run, det)
    # 0: right, fooled, flagged, but the distilled model agrees (1 = 1); 1: right, fooled, flagged, disagrees;
    # 2: not fooled; 3: right, fooled, flagged, disagrees; 4: wrong before the attack; 5: not flagged.
    assert groups["example"][1].tolist() == [1, 3, 0]
    assert groups["harmful"][1].tolist() == [0, 1, 3, 4, 5]
    assert groups["missed"][1].tolist() == [5]
    assert groups["caught"][1].tolist() == [0, 1, 2, 3, 4]
    assert wf.default_group(groups) == "example" and wf.no_example_note(run, det) is None
    assert det.detection_rate == pytest.approx(5 / 6) and det.false_alarm_rate == 0.0
    assert det.harmful_detection_rate == pytest.approx(4 / 5)


def test_the_sentence_is_true_for_the_row_it_describes():
    run = _run(pred_clean=[0, 0, 1], pred_adv=[1, 1, 1], student_adv=[0, 1, 1], y=[0, 1, 1],
               scores_adv=[0.9, 0.9, 0.2], scores_clean=[0.1, 0.7, 0.1])
    det = wf.detection(run, 0.5)
    disagree = wf.example_sentence(run, det, 0)
    assert disagree.startswith("Row 2, true class zero. The classifier reads the original as zero (right)")
    assert "attacked input as one: the attack changed its prediction" in disagree
    assert "the distilled model predicts zero, not one: the two models disagree" in disagree
    assert "so the attacked input is flagged." in disagree and disagree.endswith("not flagged.")
    agree = wf.example_sentence(run, det, 1)
    assert "(wrong)" in agree and "disagree" not in agree
    assert "the distilled model also predicts one, with probability 0.50 against the classifier's 0.90" in agree
    assert agree.endswith("flagged too (a false alarm).")
    unchanged = wf.example_sentence(run, det, 2)
    assert "as one too: the attack did not change it" in unchanged and "not flagged (a miss)" in unchanged
    # The picker and the table name the same row, by its number in the table.
    assert wf.row_label(run, det, 0).startswith("row 2 · true zero · classifier zero → one")
    table = wf.predictions_table(run, det, 0)
    assert table.iloc[1, 1] == "one (0.90)" and table.iloc[1, 2] == "zero (0.50)" and table["flagged"].tolist() == [
        "no", "yes"]


@pytest.mark.parametrize("pred_clean, pred_adv, scores_adv, words", [
    ([1, 1], [2, 2], [0.9, 0.9], "gets none of the attacked rows right"),
    ([0, 0], [0, 0], [0.9, 0.9], "changed no prediction"),
    ([0, 0], [1, 1], [0.1, 0.1], "flags none of the rows the attack fooled"),
])
def test_without_an_illustrating_row_the_page_says_why(pred_clean, pred_adv, scores_adv, words):
    run = _run(pred_clean=pred_clean, pred_adv=pred_adv, student_adv=[0, 0], y=[0, 0], scores_adv=scores_adv)
    det = wf.detection(run, 0.5)
    assert words in wf.no_example_note(run, det)
    groups = wf.example_groups(run, det)
    assert wf.default_group(groups) == ("harmful" if len(groups["harmful"][1]) else "all")


def test_the_export_has_one_line_per_table_row_in_order_with_the_original_columns_and_why_others_were_skipped():
    run = _run(pred_clean=[0, 1, 2], pred_adv=[1, 1, 0], student_adv=[0, 1, 0], y=[0, 1, 2],
               scores_adv=[0.9, 0.2, 0.8], scores_clean=[0.1, 0.6, 0.1], n_table=8)
    run.data.test_rows = np.array([2, 4, 6, 7])  # four test rows, three of them attacked (positions 0, 1, 2)
    run.data.frame.loc[5, "label"] = None
    det = wf.detection(run, 0.5)
    out = wf.export_frame(run, det)
    assert len(out) == 8 and out["row"].tolist() == list(range(8))
    assert out["name"].tolist() == [f"r{i}" for i in range(8)] and out["x"].tolist() == list(range(8))
    assert list(out.columns[:4]) == ["row", "x", "name", "label"]
    assert out["status"].tolist() == ["skipped", "skipped", "scored", "skipped", "scored", "skipped", "scored",
                                      "skipped"]
    assert out["reason"].tolist() == ["training row: both models learned from it",
                                      "held-out clean row: sets the threshold", "", "training row left out of the "
                                      "training sample", "", "no label", "", "test row not in the attacked sample"]
    scored = out[out["status"] == "scored"]
    assert scored["clean_prediction"].tolist() == ["zero", "one", "two"]
    assert scored["adversarial_prediction"].tolist() == ["one", "one", "zero"]
    assert scored["distilled_adversarial_prediction"].tolist() == ["zero", "one", "zero"]
    assert scored["prediction_changed"].tolist() == [True, False, True]
    assert scored["adversarial_score"].tolist() == [0.9, 0.2, 0.8]
    assert scored["adversarial_flagged"].tolist() == [True, False, True]
    assert scored["clean_flagged"].tolist() == [False, True, False]
    assert (scored["threshold"] == 0.5).all()


def test_a_detector_distilled_from_an_uploaded_model_has_no_archive_to_download():
    run = _run(pred_clean=[0], pred_adv=[0], student_adv=[0], y=[0], scores_adv=[0.1])
    with pytest.raises(ModelError, match="no archive"):
        run.detector_run.archive_with_threshold(0.5)


def test_every_method_parameter_has_help_in_plain_words():
    for key in ("temperature", "loss", "method", "norm", "epsilon", "steps", "rows", "attack_seed", "percentile"):
        assert len(wf.HELP[key].split()) >= 10, key
    assert "softened" in wf.HELP["temperature"] and "ε" in wf.HELP["norm"]
