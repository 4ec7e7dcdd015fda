"""The contrastive-explanations page trains a classifier on bundled iris (or digits) and explains one test row."""

import base64
import json

import numpy as np
import pytest

from engine.explanation import Explanation
from tests.app.helpers import click_and_finish, finish_job, metric_value, no_exceptions, page, run_until_job_done

pytestmark = pytest.mark.app


def _trained_page(*, epochs=30, with_ae=False, dataset=None, max_train=None):
    at = page("cem")
    at.run()
    no_exceptions(at)
    if dataset is not None:
        at.selectbox(key="cem:dataset").set_value(dataset).run()
    at.number_input(key="cem:epochs").set_value(epochs)
    if max_train is not None:
        at.number_input(key="cem:max_train").set_value(max_train)
    if with_ae:
        at.checkbox(key="cem:with_ae").check()
        at.number_input(key="cem:ae_epochs").set_value(epochs)
    at.button(key="cem:train").click().run()
    if with_ae:
        run_until_job_done(at, "cem-ae")
    finish_job(at, "cem-model")
    return at


def _explain(at, *, c_steps=2, iterations=100, modes=None):
    at.number_input(key="cem:c_steps").set_value(c_steps)
    at.number_input(key="cem:max_iterations").set_value(iterations)
    if modes is not None:
        at.multiselect(key="cem:modes").set_value(modes)
    return click_and_finish(at, "cem:explain", "cem-explain").view


def _chart(at, key):
    """The plotly figure (as a dict) of the chart with widget key ``key``."""
    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(key) or key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart with key {key!r}")


def _values(array) -> np.ndarray:
    """A plotly JSON array: a plain list, or numpy's typed-array encoding ``{'dtype', 'bdata'}``."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array, dtype=float)


def _numbers(texts) -> np.ndarray:
    """Numbers shown as text ('1,234.5', '+0.25')."""
    return np.array([float(str(t).replace(",", "")) for t in texts])


def test_train_on_iris_then_explain_one_row_with_a_pn_and_a_pp():
    at = _trained_page()
    assert at.selectbox(key="cem:dataset").value == "bundled:iris"
    assert at.multiselect(key="cem:features").value == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert metric_value(at, "Training rows") == "105" and metric_value(at, "Test rows") == "45"
    assert metric_value(at, "Classes") == "3"
    assert 0.6 < float(metric_value(at, "Test accuracy")) <= 1.0
    assert metric_value(at, "Autoencoder test MSE") == "—"
    run = at.session_state["job::cem-model"].view

    # Another test row, picked by its table row number (the only numbering on the page): its values (in cm, not
    # standardised) and its prediction follow.
    picker = at.selectbox(key="cem:row")
    assert picker.options == [f"Row {int(r):,}" for r in run.data.test_rows]
    row = int(run.data.test_rows[6])
    picker.set_value(row).run()
    no_exceptions(at)
    assert not any("test row" in c.value.lower() for c in at.caption)
    instance = next(d.value for d in at.dataframe if list(d.value.columns) == ["feature", "value"])
    raw = run.data.to_table_units(run.data.X_test[6])
    assert _numbers(instance["value"]) == pytest.approx(raw, abs=1e-3)
    assert 0.1 < _numbers(instance["value"])[3] < 3.0  # petal width in cm
    assert metric_value(at, "Model predicts") == run.data.class_names[int(run.test_proba[6].argmax())]

    # gamma needs an autoencoder; with none trained the page says so and starts nothing.
    at.number_input(key="cem:gamma").set_value(1.0)
    at.button(key="cem:explain").click().run()
    no_exceptions(at)
    assert any("needs an autoencoder" in e.value for e in at.error)
    assert "job::cem-explain" not in at.session_state
    at.number_input(key="cem:gamma").set_value(0.0)

    cem_run = _explain(at)
    pn, pp = cem_run.explanations["PN"], cem_run.explanations["PP"]
    assert cem_run.position == 6 and cem_run.table_row == row
    assert at.session_state["job::cem-explain"].label == f"Explain row {row:,}"
    assert [h.value for h in at.subheader][-1] == f"Explanation of row {row:,}"
    assert pn.meta["params"]["c_steps"] == 2 and pn.meta["params"]["max_iterations"] == 100
    original = metric_value(at, "Original predicted as")
    assert original == metric_value(at, "Model predicts")
    # This row gets both: the PN changes the class, the PP keeps it.
    assert bool(pn.found[0]) and bool(pp.found[0])
    assert metric_value(at, "PN predicted as") != original
    assert metric_value(at, "PP predicted as") == original
    assert not at.warning

    # Probabilities of the original, PN and PP side by side.
    figure = _chart(at, "cem:proba")
    assert [trace["name"] for trace in figure["data"]] == ["original", "PN", "PP"]
    assert _values(figure["data"][0]["y"]) == pytest.approx(pn.X_proba[0], abs=1e-6)

    # Per-feature table in cm: original, PN, PP, their changes and the no-information value (training median).
    table = next(d.value for d in at.dataframe if "PN − original" in d.value.columns)
    assert list(table.columns) == ["feature", "original", "PN", "PN − original", "PP", "PP − original",
                                   "no-information value"]
    assert _numbers(table["original"]) == pytest.approx(raw, abs=1e-3)
    assert _numbers(table["PN"]) - _numbers(table["original"]) == pytest.approx(_numbers(table["PN − original"]),
                                                                              abs=2e-3)
    assert _numbers(table["PN"]) == pytest.approx(run.data.to_table_units(pn.PN[0]), abs=1e-3)
    assert _numbers(table["no-information value"]) == pytest.approx(
        np.median(run.data.to_table_units(run.data.X_train), axis=0), abs=1e-3)
    sentences = [m.value for m in at.markdown]
    assert any(s.startswith("The model would predict") for s in sentences)
    assert any(s.startswith("The model still predicts") for s in sentences)

    # The change charts follow the units control: table units (cm) or standard deviations.
    in_cm = _values(_chart(at, "cem:bars:PN")["data"][0]["x"])
    at.radio(key="cem:units").set_value("standard deviations").run()
    no_exceptions(at)
    in_sd = _values(_chart(at, "cem:bars:PN")["data"][0]["x"])
    assert sorted(np.abs(in_cm)) != pytest.approx(sorted(np.abs(in_sd)))

    # One JSON per explanation; it round-trips and says how to map it back to cm.
    assert [b.proto.label for b in at.get("download_button")] == ["PN explanation JSON", "PP explanation JSON"]
    again = Explanation.from_json(pn.to_json())
    np.testing.assert_allclose(again.PN, pn.PN)
    context = json.loads(pp.to_json())["meta"]["lantern"]
    assert context["row"] == row and "test_row" not in context and context["feature_names"][0] == "sepal_length"


def test_an_autoencoder_makes_gamma_available_and_is_used_by_the_search():
    at = _trained_page(epochs=10, with_ae=True)
    assert at.session_state["job::cem-ae"].state == "done"
    assert float(metric_value(at, "Autoencoder test MSE")) > 0
    assert at.number_input(key="cem:gamma").value == 1.0  # the default once an autoencoder exists
    cem_run = _explain(at, c_steps=1, iterations=50, modes=["PN"])
    assert list(cem_run.explanations) == ["PN"]
    params = cem_run.explanations["PN"].meta["params"]
    assert params["gamma"] == 1.0 and params["has_ae_model"]
    assert [b.proto.label for b in at.get("download_button")] == ["PN explanation JSON"]


def test_digits_show_the_original_and_explanations_as_images_with_difference_maps():
    at = _trained_page(epochs=2, dataset="bundled:digits", max_train=400)
    run = at.session_state["job::cem-model"].view
    assert run.data.image_shape == (8, 8) and len(run.data.feature_names) == 64
    assert float(run.data.X_train.max()) == 1.0  # pixels scaled to [0, 1]
    assert at.selectbox(key="cem:no_info").value == "background"
    assert _chart(at, "cem:instance_image")
    cem_run = _explain(at, c_steps=1, iterations=30)
    found = [mode for mode, exp in cem_run.explanations.items() if bool(exp.found[0])]
    titles = [a["text"] for a in _chart(at, "cem:images")["layout"]["annotations"]]
    expected = 1 + 2 * len(found)
    assert len(titles) == expected and titles[0].startswith("original")
    if "PN" in found:
        assert "PN − original" in titles
    # A search that found nothing says so, with what to try.
    for mode in set(cem_run.explanations) - set(found):
        name = {"PN": "pertinent negative", "PP": "pertinent positive"}[mode]
        assert any(w.value.startswith(f"No {name} ({mode}) found") and "c_init" in w.value for w in at.warning)


def test_adult_uses_its_numeric_columns_and_its_own_split_and_shows_values_in_their_units():
    at = _trained_page(epochs=1, dataset="bundled:adult", max_train=2000)
    assert at.multiselect(key="cem:features").value == ["age", "fnlwgt", "education_num", "capital_gain",
                                                        "capital_loss", "hours_per_week"]
    assert any(c.value.startswith("Left out because they are not numeric or are categorical: workclass")
               for c in at.caption)
    assert metric_value(at, "Test rows") == "16,281"  # Adult's own test split
    assert metric_value(at, "Classes") == "2"
    # Whole numbers with thousands separators; float noise of the standardised units does not show.
    instance = next(d.value for d in at.dataframe if list(d.value.columns) == ["feature", "value"])
    assert instance["value"].tolist() == ["25", "226,802", "7", "0", "0", "40"]


def test_no_feature_columns_is_a_message_not_an_exception():
    at = page("cem")
    at.run()
    at.multiselect(key="cem:features").set_value([])
    at.button(key="cem:train").click().run()
    no_exceptions(at)
    assert any("no feature columns" in e.value for e in at.error), [e.value for e in at.error]
    assert "job::cem-model" not in at.session_state


def test_no_explanation_chosen_is_a_message():
    at = _trained_page(epochs=5)
    at.multiselect(key="cem:modes").set_value([])
    at.button(key="cem:explain").click().run()
    no_exceptions(at)
    assert any("Choose at least one explanation" in e.value for e in at.error)
    assert "job::cem-explain" not in at.session_state


def test_the_explainers_are_compiled_when_the_classifier_is_ready():
    import jobs.explain as explain_jobs

    explain_jobs._CEMS.clear()
    at = _trained_page(epochs=5)
    # A warm-up job of its own compiles PN and PP for the default settings (median no-information value, no
    # autoencoder) into the jobs' in-process cache, before the first explanation is asked for.
    run_until_job_done(at, "cem-warm")
    assert at.session_state["job::cem-warm"].result.compiled == ["PN", "PP"]
    cems = explain_jobs.cached_cems()
    assert sorted(cem.mode for cem in cems) == ["PN", "PP"] and all(cem._compiled for cem in cems)
    compiled = [dict(cem._compiled) for cem in cems]
    _explain(at, modes=["PN", "PP"])
    # The first explanation reused them: nothing was traced again, no other CEM was built.
    assert explain_jobs.cached_cems() == cems and [dict(cem._compiled) for cem in cems] == compiled


def test_settings_have_plain_words_help():
    at = _trained_page(epochs=5)
    for key in ("cem:kappa", "cem:beta", "cem:gamma", "cem:c_init", "cem:c_steps", "cem:max_iterations"):
        assert len(at.number_input(key=key).help) > 60, key
    assert "lead in probability" in at.number_input(key="cem:kappa").help
    assert "few features" in at.number_input(key="cem:beta").help
    assert at.selectbox(key="cem:no_info").help and at.selectbox(key="cem:row").help


def _hints(at) -> list[str]:
    return [w.value for w in at.warning if "until the loss flattens" in w.value]


def test_a_classifier_and_autoencoder_trained_too_briefly_say_so_next_to_the_model():
    """Issue #20 item 10 on this page: 2 epochs leave both losses falling fast, and each model's hint says so."""
    at = _trained_page(epochs=2, with_ae=True)
    no_exceptions(at)
    hints = _hints(at)
    assert any(h.startswith("Classifier:") and "explanations" in h for h in hints), hints
    assert any(h.startswith("Autoencoder:") and "gamma" in h for h in hints), hints


def test_a_classifier_trained_to_a_flat_loss_shows_no_hint():
    at = _trained_page(epochs=120)
    no_exceptions(at)
    history = at.session_state["job::cem-model"].view.history
    assert len(history.loss) == 120  # there was a full run to judge
    assert _hints(at) == []
