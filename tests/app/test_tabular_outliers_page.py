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


def _saved_detector_section(at):
    return next(e for e in at.expander if e.label == "Score with a saved detector instead of training")


def test_the_demo_offers_no_model_upload_and_says_how_to_turn_it_on():
    at = page("tabular_outliers")
    at.run()
    no_exceptions(at)
    section = _saved_detector_section(at)
    assert any("LANTERN_TRUSTED=1" in c.value for c in section.caption)
    assert not [u for u in at.get("file_uploader") if u.proto.id.endswith("aegmm:saved")]


def test_in_trusted_mode_a_downloaded_archive_scores_the_rows_like_the_model_that_made_it(trusted):
    import numpy as np

    trained = _trained_page()
    first = trained.session_state["job::aegmm"].result
    archive = first.model.to_bytes(threshold=first.threshold)

    at = page("tabular_outliers")
    at.run()
    at.file_uploader(key="aegmm:saved").upload("bad.lantern.zip", b"not a zip at all", "application/zip")
    at.run()
    no_exceptions(at)
    assert any("bad.lantern.zip cannot be loaded: not a Lantern archive" in e.value for e in at.error)
    assert "aegmm:score_saved" not in {b.key for b in at.button}

    at.file_uploader(key="aegmm:saved").upload("aegmm.lantern.zip", archive, "application/zip")
    at.run()
    no_exceptions(at)
    assert not at.error
    features = at.multiselect(key="aegmm:features").value
    at.multiselect(key="aegmm:features").set_value(features[:-1])  # one column short: refused, with the fix
    at.button(key="aegmm:score_saved").click()
    at.run()
    assert any(f"trained on {len(features)} feature(s) and {len(features) - 1} are selected" in e.value
               for e in at.error)
    assert "job::aegmm" not in at.session_state

    at.multiselect(key="aegmm:features").set_value(features)
    at.button(key="aegmm:score_saved").click()
    at.run()
    run_until_job_done(at, "aegmm")
    no_exceptions(at)
    second = at.session_state["job::aegmm"].result
    assert second.table_name.endswith("(saved detector)") and second.from_archive
    np.testing.assert_allclose(second.scores, first.scores, rtol=1e-5, atol=1e-6)
    assert int(metric_value(at, "Flagged rows").replace(",", "")) == int(np.sum(
        second.scores > np.percentile(second.scores, 95.0)))
