"""The adversarial-detection page: classifier, distilled detector and attack as three jobs, then the detection results,
the example row that illustrates the method, and the export that joins back to the table."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from engine.saving import load_detector
from tests.app.helpers import metric_value, no_exceptions, page, run_until_job_done
from workflows import adversarial as wf

pytestmark = pytest.mark.app


def _done(at, key):
    run_until_job_done(at, key)
    no_exceptions(at)
    job = at.session_state[f"job::{key}"]
    assert job.state == "done", job.error
    return job


def _chart(at, key):
    """The plotly figure (as a dict) of the chart with widget key ``key``."""
    for chart in at.get("plotly_chart"):
        if key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart with key {key!r}")


def _table(at, first_column):
    """The dataframe (inside the results fragment, so found by content) whose first column is ``first_column``."""
    for frame in at.dataframe:
        if frame.value.columns[0] == first_column:
            return frame.value
    raise AssertionError(f"no dataframe starting with column {first_column!r}")


@pytest.fixture
def served(monkeypatch):
    """What each download button would serve, by label (AppTest has no media server: its data is recorded)."""
    import streamlit as st

    made = {}
    original = st.download_button

    def download_button(label, data, *args, **kwargs):
        made[label] = data
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", download_button)
    return made


def _download(served, label) -> bytes:
    data = served[label]
    return data() if callable(data) else data


def _train_classifier(at, epochs=3):
    at.number_input(key="adv:clf:epochs").set_value(epochs)
    at.button(key="adv:train").click().run()
    return _done(at, "adv-classifier")


def _distil(at, epochs=2):
    at.number_input(key="adv:distil:epochs").set_value(epochs)
    at.button(key="adv:distil").click().run()
    return _done(at, "adv-distil")


def _attack(at, method="pgd", steps=2, rows=200):
    at.radio(key="adv:method").set_value(method)
    at.number_input(key="adv:steps").set_value(steps)
    at.number_input(key="adv:rows").set_value(rows)
    at.button(key="adv:attack").click().run()
    return _done(at, "adv-attack")


def test_digits_train_distil_attack_then_threshold_roc_and_one_row(served):
    at = page("adversarial")
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="adv:dataset").value == "bundled:digits"
    # Each step's button appears only once the previous step has a result.
    keys = {b.key for b in at.button}
    assert "adv:train" in keys and "adv:distil" not in keys and "adv:attack" not in keys
    assert any("Train the classifier first" in i.value for i in at.info)

    classifier_job = _train_classifier(at)
    assert metric_value(at, "Training rows") == "1,078"  # 1,347 training rows of 1,797, a fifth held out
    assert metric_value(at, "Held-out clean rows") == "269"
    assert metric_value(at, "Test rows") == "450"
    assert 0.3 < float(metric_value(at, "Test accuracy")) <= 1.0  # 10 classes: chance is 0.1
    assert "adv:distil" in {b.key for b in at.button} and "adv:attack" not in {b.key for b in at.button}
    assert all(0 <= e["accuracy"] <= 1 for e in classifier_job.events)  # live accuracy beside the loss

    distil_job = _distil(at)
    det_run = distil_job.view
    detector = load_detector(det_run.archive)
    assert detector.temperature == 2.0 and detector.loss_type == "kld"  # the page's benchmarked defaults
    assert len(detector.history_.loss) == 2
    assert at.slider(key="adv:temperature").value == 2.0
    assert metric_value(at, "Agreement on held-out clean rows") == f"{det_run.agreement:.1%}"
    assert metric_value(at, "Distillation epochs") == "2"

    attack_job = _attack(at)
    attack_run = attack_job.view
    result = attack_job.result.result  # the job's typed answer carries the engine's AttackResult as is
    assert attack_run.result is result
    assert len(attack_run.positions) == 200 and result.params["steps"] == 2
    assert float(np.max(result.linf)) <= 0.15 + 1e-5  # the default ε: 15 % of the [0, 1] data range
    assert float(metric_value(at, "Classifier accuracy, attacked")) < float(
        metric_value(at, "Classifier accuracy, clean"))
    assert metric_value(at, "Harmful rate") == f"{result.harmful_rate:.1%}"
    auc = float(metric_value(at, "Detection ROC-AUC"))
    assert auc == pytest.approx(attack_run.curves.roc_auc, abs=1e-3)
    roc = _chart(at, "adv:roc")
    assert f"AUC {auc:.3f}" in roc["layout"]["title"]["text"]
    hist = _chart(at, "adv:hist")
    assert [trace["name"] for trace in hist["data"]] == ["clean inputs", "adversarial inputs"]

    # The threshold slider re-thresholds cached scores: a lower percentile raises both rates.
    calibration = det_run.calibration_scores
    before = float(metric_value(at, "False-alarm rate").rstrip("%"))
    at.slider(key="adv:percentile").set_value(50.0).run()
    no_exceptions(at)
    threshold = np.percentile(calibration, 50.0)
    expected = np.mean(attack_run.scores_clean > threshold)
    assert metric_value(at, "False-alarm rate") == f"{expected:.1%}"
    assert float(metric_value(at, "False-alarm rate").rstrip("%")) > before
    assert metric_value(at, "Detection rate") == f"{np.mean(attack_run.scores_adv > threshold):.1%}"
    # The ROC marks the operating point at the threshold; the archive download carries the threshold.
    point = _chart(at, "adv:roc")["data"][-1]
    assert point["x"][0] == pytest.approx(expected)
    assert load_detector(_download(served, "Detector archive")).threshold == pytest.approx(threshold)

    # The per-instance view: the filter decides which rows are offered; images and both models' predictions.
    at.radio(key="adv:filter").set_value("caught").run()
    no_exceptions(at)
    flagged = np.flatnonzero(attack_run.scores_adv > threshold)
    assert list(at.selectbox(key="adv:instance").options) == [
        at.selectbox(key="adv:instance").format_func(i) for i in flagged[:500]]
    row = int(at.selectbox(key="adv:instance").value)  # the row chosen before stays chosen if the filter offers it
    assert row in flagged
    images = _chart(at, "adv:images")
    assert len(images["data"]) == 3 and images["layout"]["annotations"][2]["text"].startswith("perturbation")
    table = _table(at, "input")
    assert table["input"].tolist() == ["original", "adversarial"]
    assert table["flagged"].tolist()[1] == "yes"
    names = attack_run.data.class_names
    assert table.iloc[1, 1].startswith(names[result.pred_adv[row]])
    assert [b.proto.label for b in at.get("download_button")] == ["Scores CSV", "Detector archive"]

    # Re-running the attack keeps the classifier and the detector.
    second = _attack(at, method="fgsm", rows=100).view
    assert at.session_state["job::adv-classifier"] is classifier_job
    assert at.session_state["job::adv-distil"] is distil_job
    assert second.result.params["method"] == "fgsm" and len(second.positions) == 100
    assert any(c.value.startswith("FGSM, L∞ ε = 0.15") for c in at.caption)

    # Re-distilling forgets the attack (its scores came from the old detector) but keeps the classifier.
    at.button(key="adv:distil").click().run()
    assert "job::adv-attack" not in at.session_state
    _done(at, "adv-distil")
    assert at.session_state["job::adv-classifier"] is classifier_job
    assert not any(h.value == "Results" for h in at.header)
    assert "adv:attack" in {b.key for b in at.button}

    # Retraining the classifier forgets the detector too.
    at.button(key="adv:train").click().run()
    assert "job::adv-distil" not in at.session_state
    _done(at, "adv-classifier")
    assert "adv:attack" not in {b.key for b in at.button}


def _digits_attacked(at, epochs=3):
    """Digits through the three steps with a strong enough attack that most predictions change."""
    at.run()
    _train_classifier(at, epochs=epochs)
    _distil(at, epochs=3)
    at.slider(key="adv:epsilon").set_value(0.3)
    return _attack(at, steps=5, rows=150)


def test_the_first_example_shows_a_right_prediction_fooled_and_caught_with_a_sentence_true_for_it():
    at = page("adversarial")
    attack_job = _digits_attacked(at)
    run, result = attack_job.view, attack_job.view.result
    no_exceptions(at)
    det = wf.detection(run, wf.threshold(run.detector_run.calibration_scores, 95.0))
    # The first group offered and chosen: rows the classifier gets right, that the attack fools, that are flagged.
    assert at.radio(key="adv:filter").value == "example"
    i = int(at.selectbox(key="adv:instance").value)
    assert result.pred_clean[i] == result.y[i], "the clean classifier gets the first example right"
    assert result.pred_adv[i] != result.pred_clean[i], "the attack flips its prediction"
    assert det.flag_adv[i], "the detector flags the attacked input"
    # One numbering: the picker, the sentence and the export name the row by its position in the table.
    row = int(run.data.test_rows[run.positions[i]])
    assert at.selectbox(key="adv:instance").format_func(i).startswith(f"row {row} ·")
    sentence = next(m.value for m in at.markdown if m.value.startswith(f"Row {row},"))
    names = run.data.class_names
    assert f"true class {names[result.y[i]]}" in sentence and "(right)" in sentence
    assert f"attacked input as {names[result.pred_adv[i]]}: the attack changed its prediction" in sentence
    assert "so the attacked input is flagged." in sentence
    # The sentence says what the table shows about the two models on the attacked input.
    table = _table(at, "input")
    classifier_adv, distilled_adv = table.iloc[1, 1].split(" (")[0], table.iloc[1, 2].split(" (")[0]
    assert classifier_adv == names[result.pred_adv[i]]
    if distilled_adv != classifier_adv:
        assert (f"the distilled model predicts {distilled_adv}, not {classifier_adv}: the two models disagree"
                in sentence)
    else:
        assert f"the distilled model also predicts {classifier_adv}" in sentence and "disagree" not in sentence
    # The rows where the distilled model predicts another class come first: they show the disagreement plainly.
    visible = run.student_adv.argmax(axis=1) != result.pred_adv
    example = wf.example_groups(run, det)["example"][1]
    if visible[example].any():
        assert visible[i]


def test_the_scores_csv_has_one_line_per_table_row_in_order_with_the_original_columns(served):
    at = page("adversarial")
    at.run()
    at.selectbox(key="adv:dataset").set_value("bundled:breast_cancer").run()
    _train_classifier(at, epochs=2)
    _distil(at, epochs=1)
    run = _attack(at, method="fgsm", rows=50).view
    export = pd.read_csv(io.BytesIO(_download(served, "Scores CSV")))
    table = run.data.frame
    assert len(export) == len(table) == 569
    assert export["row"].tolist() == list(range(569))
    assert list(export.columns[1:1 + len(table.columns)]) == list(table.columns)
    assert np.allclose(export[table.columns[0]], table[table.columns[0]])  # the original values, in order
    scored = export[export["status"] == "scored"]
    assert scored["row"].tolist() == sorted(run.data.test_rows[run.positions].tolist())
    assert len(scored) == 50
    assert {"clean_prediction", "adversarial_prediction", "adversarial_score", "adversarial_flagged",
            "clean_score", "clean_flagged"} <= set(export.columns)
    # The predictions and scores are the run's, on the row the page names.
    first = int(np.argmin(run.positions))
    line = scored.iloc[0]
    names = run.data.class_names
    assert line["row"] == run.data.test_rows[run.positions[first]]
    assert line["clean_prediction"] == names[run.result.pred_clean[first]]
    assert line["adversarial_prediction"] == names[run.result.pred_adv[first]]
    assert line["adversarial_score"] == pytest.approx(run.scores_adv[first], rel=1e-6)
    threshold = float(line["threshold"])
    assert bool(line["adversarial_flagged"]) == bool(run.scores_adv[first] > threshold)
    # The other rows say why they were not attacked.
    skipped = export[export["status"] == "skipped"]
    assert set(skipped["reason"]) <= {"training row: both models learned from it",
                                      "held-out clean row: sets the threshold", "test row not in the attacked sample"}
    assert (skipped["reason"] == "held-out clean row: sets the threshold").sum() == len(run.data.calibration_rows)


def test_every_method_parameter_has_plain_words_help():
    at = page("adversarial")
    at.run()
    _train_classifier(at, epochs=1)
    for widget in (at.selectbox(key="adv:network"), at.number_input(key="adv:clf:epochs"),
                   at.select_slider(key="adv:clf:batch"), at.select_slider(key="adv:clf:lr")):
        assert len(widget.proto.help.split()) >= 8, widget.key
    _distil(at, epochs=1)
    assert "softened" in at.slider(key="adv:temperature").proto.help
    assert "disagreement" in at.radio(key="adv:loss").proto.help
    assert "one step" in at.radio(key="adv:method").proto.help
    assert "L∞" in at.radio(key="adv:norm").proto.help and "L2" in at.radio(key="adv:norm").proto.help
    assert "share of each feature's range" in at.slider(key="adv:epsilon").proto.help
    assert "small steps" in at.number_input(key="adv:steps").proto.help
    assert at.number_input(key="adv:rows").proto.help and at.number_input(key="adv:attack_seed").proto.help


def test_breast_cancer_table_shows_per_feature_changes():
    at = page("adversarial")
    at.run()
    at.selectbox(key="adv:dataset").set_value("bundled:breast_cancer").run()
    no_exceptions(at)
    assert at.selectbox(key="adv:label").value == "diagnosis"
    assert len(at.multiselect(key="adv:features").value) == 30
    assert at.selectbox(key="adv:network").options == ["MLP 128-64", "MLP 256-128"]  # no CNN for tables
    _train_classifier(at, epochs=5)
    assert metric_value(at, "Test rows") == "142"  # a stratified 25 % of 569
    _distil(at)
    at.radio(key="adv:norm").set_value("2")
    run = _attack(at, method="fgsm").view
    assert len(run.positions) == 142  # fewer test rows than asked: all of them
    assert float(np.max(run.result.l2)) <= 0.15 * np.sqrt(30) + 1e-4  # ε is the RMS change per feature for L2
    at.radio(key="adv:filter").set_value("all").run()
    no_exceptions(at)
    changes = _chart(at, "adv:changes")
    assert len(changes["data"][0]["y"]) == 30 and "table units" in changes["layout"]["xaxis"]["title"]["text"]
    values = _table(at, "feature")
    assert list(values.columns) == ["feature", "original", "adversarial", "change"]
    assert np.allclose(values["adversarial"] - values["original"], values["change"], atol=1e-6)


@pytest.mark.parametrize("dataset, change, message", [
    ("bundled:breast_cancer", {"adv:features": []}, "no feature columns"),
    ("bundled:breast_cancer", {"adv:label": "mean_radius"}, "choose a column of class labels"),
])
def test_bad_choices_show_a_message_not_an_exception(dataset, change, message):
    at = page("adversarial")
    at.run()
    at.selectbox(key="adv:dataset").set_value(dataset).run()
    for key, value in change.items():
        (at.multiselect(key=key) if key == "adv:features" else at.selectbox(key=key)).set_value(value)
    at.button(key="adv:train").click().run()
    no_exceptions(at)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "job::adv-classifier" not in at.session_state


def _convergence_hints(at):
    return [w.value for w in at.warning if "until the loss flattens" in w.value]


def test_one_epoch_of_either_training_gets_a_convergence_hint_and_the_default_epochs_on_digits_do_not():
    """Item 10 of issue #20: the classifier and the distilled model each say when they stopped while still learning."""
    at = page("adversarial")
    at.run()
    _train_classifier(at, epochs=1)
    hints = _convergence_hints(at)
    assert len(hints) == 1 and hints[0].startswith("Classifier: training stopped after epoch 1")
    _distil(at, epochs=1)
    hints = _convergence_hints(at)
    assert len(hints) == 2 and hints[1].startswith("Distilled model: training stopped after epoch 1")
    assert "false alarms" in hints[1]

    # The page's defaults (30 and 25 epochs) on digits: both losses have flattened, no hint.
    job = _train_classifier(at, epochs=30)
    assert len(job.view.history.loss) == 30
    assert _convergence_hints(at) == []
    job = _distil(at, epochs=25)
    assert len(job.view.history.loss) == 25
    assert _convergence_hints(at) == []
