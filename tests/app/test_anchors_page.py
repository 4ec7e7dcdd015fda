"""The Anchors page trains a random forest on bundled Adult and explains one test row with an anchor."""

import json

import pytest

from engine.explanation import Explanation
from tests.app.helpers import click_and_finish, metric_value, no_exceptions, page, run_until_job_done

pytestmark = pytest.mark.app


def _trained_page():
    """Adult (the default), a 10-tree forest on 3,000 training rows."""
    at = page("anchors")
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="anchors:dataset").value == "bundled:adult"
    at.number_input(key="anchors:trees").set_value(10)
    at.number_input(key="anchors:max_train").set_value(3000)
    click_and_finish(at, "anchors:train", "anchors-model")
    return at


def test_train_on_adult_then_explain_one_row_shows_rules_precision_coverage_and_examples():
    at = _trained_page()
    assert 0.75 < float(metric_value(at, "Test accuracy")) <= 1.0
    assert metric_value(at, "Training rows") == "3,000"
    assert metric_value(at, "Test rows") == "16,281"  # Adult's own test split
    run = at.session_state["job::anchors-model"].view
    assert len(run.data.feature_names) == 14 and len(run.data.categorical_names) == 8

    # Rows are picked by their table row number only: Adult's test rows follow its 32,561 training rows.
    picker = at.selectbox(key="anchors:row")
    assert picker.value == 32561 and picker.options[:2] == ["Row 32,561", "Row 32,562"]
    picker.set_value(32576).run()
    no_exceptions(at)
    assert not any("test row" in c.value.lower() for c in at.caption)
    predicted = metric_value(at, "Model predicts")
    assert predicted in ("<=50K", ">50K")
    instance = next(d.value for d in at.dataframe if list(d.value.columns) == ["feature", "value"])
    assert instance["feature"].tolist() == run.data.feature_names

    at.number_input(key="anchors:coverage_samples").set_value(2000)
    job = click_and_finish(at, "anchors:explain", "anchors-explain")
    anchor_run = job.view
    exp = anchor_run.explanation
    assert anchor_run.table_row == 32576 and job.label == "Explain row 32,576"
    assert [h.value for h in at.subheader][-1] == "Anchor for row 32,576"
    assert len(exp.raw["step_names"]) >= 2, "this row needs several rules at threshold 0.95"

    # The rules as chips, the verdict, and the metrics.
    rule_line = next(m.value for m in at.markdown if m.value.startswith("**IF**"))
    assert rule_line.count(":blue-badge[") == len(exp.anchor) and "**THEN**" in rule_line
    assert (at.success if exp.raw["success"] else at.warning)
    assert float(metric_value(at, "Precision")) == pytest.approx(exp.precision, abs=1e-3)
    assert float(metric_value(at, "Coverage")) == pytest.approx(exp.coverage, abs=1e-3)
    assert 0 < float(metric_value(at, "Held-out coverage")) <= 1
    assert metric_value(at, "Rules") == str(len(exp.anchor))
    assert exp.meta["params"]["coverage_samples"] == 2000

    # Example rows for the last rule; the step slider shows the examples after an earlier rule.
    slider = at.select_slider(key="anchors:example_step")
    assert slider.value == len(exp.raw["step_names"])
    last = exp.raw["examples"][-1]
    assert [tab.label for tab in at.tabs] == [f"Same prediction ({predicted}): {len(last['covered_true'])}",
                                             f"Different prediction: {len(last['covered_false'])}"]
    slider.set_value(1).run()
    no_exceptions(at)
    first = exp.raw["examples"][0]
    assert at.tabs[1].label == f"Different prediction: {len(first['covered_false'])}"
    other = next(d.value for d in at.dataframe if "predicted" in d.value.columns)
    assert len(other) == len(first["covered_false"])

    # The explanation downloads as JSON that round-trips.
    assert at.get("download_button")[0].proto.label == "Explanation JSON"
    again = Explanation.from_json(exp.to_json())
    assert again.anchor == exp.anchor and json.loads(exp.to_json())["meta"]["name"] == "AnchorTabular"
    assert json.loads(exp.to_json())["meta"]["lantern"]["row"] == 32576  # the table row it explains

    # Retraining forgets the explanation of the previous model.
    at.button(key="anchors:train").click()
    at.run()
    assert "job::anchors-explain" not in at.session_state
    run_until_job_done(at, "anchors-model")
    no_exceptions(at)
    assert not any(m.value.startswith("**IF**") for m in at.markdown)


@pytest.mark.parametrize("change, message", [
    ({"anchors:features": []}, "no feature columns"),
    ({"anchors:label": "age"}, "choose a column of class labels"),
])
def test_bad_choices_show_a_message_not_an_exception(change, message):
    at = page("anchors")
    at.run()
    for key, value in change.items():
        (at.multiselect(key=key) if key == "anchors:features" else at.selectbox(key=key)).set_value(value)
    at.button(key="anchors:train").click().run()
    no_exceptions(at)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert "job::anchors-model" not in at.session_state


def test_label_among_the_features_is_left_out_with_a_note():
    at = page("anchors")
    at.run()
    at.selectbox(key="anchors:label").set_value("sex")
    at.number_input(key="anchors:trees").set_value(10)
    at.number_input(key="anchors:max_train").set_value(1000)
    at.button(key="anchors:train").click().run()
    no_exceptions(at)
    assert any("`sex` is the label" in i.value for i in at.info)
    run_until_job_done(at, "anchors-model")
    run = at.session_state["job::anchors-model"].view
    assert "sex" not in run.data.feature_names and run.data.class_names == ["Female", "Male"]


def test_iris_with_a_random_split():
    at = page("anchors")
    at.run()
    at.selectbox(key="anchors:dataset").set_value("bundled:iris").run()
    no_exceptions(at)
    assert at.selectbox(key="anchors:label").value == "species"
    at.number_input(key="anchors:trees").set_value(10)
    at.button(key="anchors:train").click().run()
    run_until_job_done(at, "anchors-model")
    no_exceptions(at)
    assert metric_value(at, "Test rows") == "36"  # a stratified 25 % split: 12 of the 50 flowers per class
    at.number_input(key="anchors:max_rules").set_value(2)
    exp = click_and_finish(at, "anchors:explain", "anchors-explain").result.explanation
    assert 1 <= len(exp.anchor) <= 2
    assert all(any(name in rule for name in ("sepal_length", "sepal_width", "petal_length", "petal_width"))
               for rule in exp.anchor)


def test_low_threshold_on_a_majority_prediction_needs_no_rule():
    at = page("anchors")
    at.run()
    at.number_input(key="anchors:trees").set_value(10)
    at.number_input(key="anchors:max_train").set_value(1000)
    at.button(key="anchors:train").click().run()
    run_until_job_done(at, "anchors-model")
    assert metric_value(at, "Model predicts") == "<=50K"  # the first test row, like three quarters of Adult
    at.slider(key="anchors:threshold").set_value(0.5)
    at.button(key="anchors:explain").click().run()
    run_until_job_done(at, "anchors-explain")
    no_exceptions(at)
    assert at.session_state["job::anchors-explain"].result.explanation.anchor == []
    assert any("No condition is needed" in i.value for i in at.info)
    assert metric_value(at, "Rules") == "0" and metric_value(at, "Coverage") == "1.000"
    assert not at.select_slider and not at.tabs  # no steps, so no chart of steps and no examples
    assert at.get("download_button")


def test_search_settings_have_plain_words_help():
    at = _trained_page()
    for key in ("anchors:threshold", "anchors:beam", "anchors:coverage_samples", "anchors:max_rules",
                "anchors:explain_seed", "anchors:row"):
        widget = at.slider(key=key) if key == "anchors:threshold" else (
            at.selectbox(key=key) if key == "anchors:row" else at.number_input(key=key))
        assert widget.help and len(widget.help) > 40, key
    assert "95 %" in at.slider(key="anchors:threshold").help and "coverage" in at.number_input(
        key="anchors:coverage_samples").help
