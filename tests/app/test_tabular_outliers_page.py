"""The tabular-outliers page trains AEGMM on bundled Shuttle and re-thresholds cached scores."""

import pytest

from tests.app.helpers import metric_value, no_exceptions, page, run_until_job_done

pytestmark = pytest.mark.app


def _trained_page():
    at = page("tabular_outliers")
    at.run()
    no_exceptions(at)
    at.number_input(key="aegmm:epochs").set_value(2)
    at.number_input(key="aegmm:max_rows").set_value(3000)
    at.button(key="aegmm:train").click()
    at.run()
    run_until_job_done(at, "aegmm")
    no_exceptions(at)
    return at


def test_train_two_epochs_on_shuttle_then_slider_changes_flagged_count():
    at = _trained_page()
    assert at.session_state["job::aegmm"].state == "done", at.session_state["job::aegmm"].error
    flagged_at_95 = int(metric_value(at, "Flagged rows").replace(",", ""))
    assert 0 < flagged_at_95 < 49_097
    # With the bundled label column the page reports precision / recall / F1.
    assert {"Precision", "Recall", "F1"} <= {m.label for m in at.metric}

    at.slider(key="aegmm:percentile").set_value(80.0).run()
    no_exceptions(at)
    flagged_at_80 = int(metric_value(at, "Flagged rows").replace(",", ""))
    assert flagged_at_80 > flagged_at_95
    # The detector carries the threshold chosen on the slider.
    run = at.session_state["job::aegmm"].result
    assert run.threshold == pytest.approx(float(metric_value(at, "Threshold (energy)")), rel=1e-3)


def test_bad_column_choice_shows_message_not_exception():
    at = page("tabular_outliers")
    at.run()
    at.multiselect(key="aegmm:features").set_value([])
    at.button(key="aegmm:train").click().run()
    no_exceptions(at)
    assert any("no feature columns" in e.value for e in at.error)
    assert "job::aegmm" not in at.session_state


def test_reruns_never_clear_the_keras_session(monkeypatch):
    """Streamlit's default clear_session() after each rerun would reset TF state under running jobs."""
    import keras

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    at = page("tabular_outliers")
    at.run()
    at.run()
    no_exceptions(at)
    assert calls == []


def test_moving_the_slider_never_calls_the_model_and_the_why_chart_matches_the_detector():
    """The per-row 'why' errors of the rows on offer are computed once by the job; a slider move only re-thresholds."""
    import numpy as np

    at = _trained_page()
    run = at.session_state["job::aegmm"].result
    top = int(np.argmax(run.scores))
    np.testing.assert_allclose(run.feature_errors(top),
                               run.model.load().feature_reconstruction_error(run.X[top:top + 1])[0], rtol=1e-5)
    unexplained = next(p for p in range(len(run.X)) if p not in run.explained)
    assert run.feature_errors(unexplained).shape == (len(run.columns),)  # any other row still works

    def no_model(*args, **kwargs):
        raise AssertionError("the slider path called the model")

    run.model.load = no_model  # building the detector (let alone calling it) now fails
    for percentile in (60.0, 99.0):
        at.slider(key="aegmm:percentile").set_value(percentile).run()
        no_exceptions(at)
    assert any("Per-feature reconstruction error of row" in str(chart.proto.spec) for chart in at.get("plotly_chart"))
