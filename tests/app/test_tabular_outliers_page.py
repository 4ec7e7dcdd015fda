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
    run = at.session_state["job::aegmm"].view
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
    run = at.session_state["job::aegmm"].view
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
    first = trained.session_state["job::aegmm"].view
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
    second = at.session_state["job::aegmm"].view
    assert second.table_name.endswith("(saved detector)") and second.from_archive
    np.testing.assert_allclose(second.scores, first.scores, rtol=1e-5, atol=1e-6)
    # The saved detector keeps its threshold (not a percentile of the newly scored rows).
    assert second.saved_threshold == pytest.approx(first.threshold)
    assert int(metric_value(at, "Flagged rows").replace(",", "")) == int(np.sum(second.scores > first.threshold))


# -- an analyst's own CSV (issue #20: joinable export, saved threshold, text features, labels) ----------------------


def _own_table(frame=None, name="own.csv"):
    from engine.ingest import read_csv_bytes
    from tests.own_csv import own_csv_bytes

    data = own_csv_bytes() if frame is None else frame.to_csv(index=False).encode("utf-8")
    return read_csv_bytes(data, name=name)


def _page_on(table, monkeypatch=None, captured=None):
    """The page with ``table`` as the session's uploaded dataset; with ``captured``, the CSV downloads' makers."""
    if captured is not None:
        from ui import downloads

        original = downloads.csv_button

        def recording(label, frame, file_name, key):
            captured[key] = frame
            return original(label, frame, file_name, key)

        monkeypatch.setattr(downloads, "csv_button", recording)
    at = page("tabular_outliers")
    at.session_state["active_table"] = table
    at.session_state["active_origin"] = "upload"
    at.run()
    no_exceptions(at)
    return at


def _train(at, features, epochs=2):
    at.multiselect(key="aegmm:features").set_value(features)
    at.number_input(key="aegmm:epochs").set_value(epochs)
    at.button(key="aegmm:train").click()
    at.run()
    run_until_job_done(at, "aegmm")
    no_exceptions(at)
    assert at.session_state["job::aegmm"].state == "done", at.session_state["job::aegmm"].error
    return at.session_state["job::aegmm"].view


def test_with_an_own_csv_the_hint_speaks_of_that_file_not_of_shuttle():
    at = _page_on(_own_table())
    hints = " ".join(i.value for i in at.info)
    assert "Bundled Shuttle" not in hints
    assert "own.csv" in hints and "text columns" in hints


def test_a_text_column_is_offered_and_the_scores_csv_joins_back_to_every_input_row(monkeypatch):
    import io

    import pandas as pd

    from engine.export import safe_csv_bytes
    from tests.own_csv import MISSING_ROWS, NUMERIC

    captured = {}
    at = _page_on(_own_table(), monkeypatch, captured)
    assert "city" in at.multiselect(key="aegmm:features").options  # the text column is offered
    run = _train(at, NUMERIC + ["city"])
    assert run.columns[:5] == NUMERIC and set(run.columns[5:]) == {
        "city=Paris", "city=Lyon", "city=Nice", "city=Lille", "city=(other)"}  # one-hot, with an "other" bucket

    export = pd.read_csv(io.BytesIO(safe_csv_bytes(captured["aegmm:csv"]())))  # the page's download, as sent
    assert len(export) == 300 and export["row"].tolist() == list(range(300))  # every input row, in order
    assert {"city", "label", "status", "reason", "instance_score", "is_outlier"} <= set(export.columns)
    skipped = export[export["status"] == "skipped"]
    assert skipped["row"].tolist() == list(MISSING_ROWS)
    assert skipped["reason"].str.contains("x2").all() and skipped["instance_score"].isna().all()
    assert (export.loc[export["status"] == "scored", "reason"].fillna("") == "").all()
    # The flagged rows on screen and in the CSV carry the same row numbers.
    table = next(d.value for d in at.dataframe if "instance_score" in d.value.columns)
    flagged_on_screen = set(table.index.tolist())
    assert flagged_on_screen
    assert flagged_on_screen == set(export.loc[export["is_outlier"] == 1, "row"])
    assert any("4 of 300 rows were not scored" in i.value for i in at.info)


def test_a_saved_detector_keeps_its_threshold_and_encoding_and_reports_unseen_categories(trusted):
    import numpy as np

    from tests.own_csv import NUMERIC, own_frame

    at = _page_on(_own_table())
    run = _train(at, NUMERIC + ["city"])
    archive = run.model.to_bytes(threshold=run.threshold, threshold_perc_=run.percentile)

    # A new file of ordinary rows only: its 150 most normal rows, three of them in a city never seen in training.
    source = own_frame()
    normal = source.iloc[run.prepared.rows[np.argsort(run.scores)[:150]]].reset_index(drop=True)
    normal.loc[[0, 1, 2], "city"] = "Berlin"
    scored = _page_on(_own_table(normal, name="new.csv"))
    scored.file_uploader(key="aegmm:saved").upload("aegmm.lantern.zip", archive, "application/zip")
    scored.run()
    scored.multiselect(key="aegmm:features").set_value(["city"] + NUMERIC)  # any order: the archive's is used
    scored.button(key="aegmm:score_saved").click()
    scored.run()
    run_until_job_done(scored, "aegmm")
    no_exceptions(scored)
    second = scored.session_state["job::aegmm"].view
    assert second.from_archive and second.reference_is_training
    assert second.saved_threshold == pytest.approx(run.threshold)
    assert scored.slider(key="aegmm:percentile").value == pytest.approx(run.percentile)
    flagged = int(metric_value(scored, "Flagged rows"))
    assert flagged <= 3 and flagged / 150 < 0.05 / 2  # not 5 % of whatever file is scored
    assert second.prepared.n_unseen == 3
    assert any("3 of 150 rows have a text value outside the detector's categories" in i.value for i in scored.info)
    assert any("of the training rows and" in c.value for c in scored.caption)  # new scores against training ones


def test_the_sidebar_names_the_dataset_the_page_uses():
    """app.py draws the sidebar before the page; the page's dataset choice replaces its dataset line."""
    from streamlit.testing.v1 import AppTest

    def app():
        import streamlit as st

        from ui import data as ui_data

        with st.sidebar:
            ui_data.sidebar_dataset()
        ui_data.choose_table("seq2seq", key="s2s:dataset")

    at = AppTest.from_function(app, default_timeout=60)
    at.run()
    no_exceptions(at)
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Shuttle" not in sidebar and "ECG" in sidebar, sidebar
    assert [c.value for c in at.sidebar.caption] == ["Dataset on this page"]


def _convergence_hints(at):
    return [w.value for w in at.warning if "until the loss flattens" in w.value]


def test_one_epoch_gets_the_convergence_hint_and_enough_epochs_on_easy_data_do_not():
    """Item 10 of issue #20: training stopped while the loss still fell fast is called out next to the results."""
    import numpy as np
    import pandas as pd

    from engine.ingest import table_from_frame
    from ui.hints import epoch_losses

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    at = _page_on(table_from_frame(frame, name="easy.csv"))
    at.select_slider(key="aegmm:batch").set_value(32)  # many steps per epoch: the loss flattens within 15 epochs

    _train(at, ["a", "b", "c"], epochs=1)
    hints = _convergence_hints(at)
    assert len(hints) == 1 and "Training stopped after epoch 1" in hints[0] and "more epochs" in hints[0]

    _train(at, ["a", "b", "c"], epochs=15)
    job = at.session_state["job::aegmm"]
    assert len(epoch_losses(job.events)) == 15  # the hint had a whole loss history to judge, and judged it settled
    assert _convergence_hints(at) == []
    assert any(m.label == "Flagged rows" for m in at.metric)  # the results (of the 15-epoch run) are on screen
