"""The time-series outliers page trains Seq2Seq on the bundled MIT-BIH ECG and re-thresholds cached scores."""

import base64
import json

import numpy as np
import pytest

from tests.app.helpers import click_and_finish, metric_value, no_exceptions, page, run_until_job_done

pytestmark = pytest.mark.app


def _count(at, label: str) -> int:
    return int(metric_value(at, label).replace(",", ""))


def _chart(at, key: str) -> dict:
    """The plotly figure (as a dict) of the chart with key ``key``."""
    for chart in at.get("plotly_chart"):
        if key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart with key {key!r}")


def _windows(at):
    """The ranked-windows table."""
    return next(df.value for df in at.dataframe if "instance_score" in df.value.columns)


def _array(values) -> np.ndarray:
    """A trace's data: a list, or plotly's typed-array form ``{'dtype', 'bdata'[, 'shape']}``."""
    if isinstance(values, dict):
        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        if "shape" in values:
            array = array.reshape([int(n) for n in str(values["shape"]).split(",")])
        return array
    return np.asarray(values)


def _mit_bih(at):
    """Switch the page to the bundled MIT-BIH ECG excerpt, trained on its first 80 % (the tests' fixed case)."""
    at.selectbox(key="s2s:dataset").set_value("bundled:ecg_mitdb").run()
    at.slider(key="s2s:train_share").set_value(80)
    return at


def _step_export(at):
    """The time-step export as the page's Export button builds it, at the page's current thresholds."""
    from workflows import timeseries as flow

    run = at.session_state["job::seq2seq"].view
    return flow.step_export(run, flow.apply_thresholds(run, run.threshold, at.slider(key="s2s:outlier_perc").value))


@pytest.fixture(scope="module")
def trained():
    """The page after a 2-epoch fit on the ECG (windows of 50 steps, latent 8), shared by the tests below."""
    at = page("timeseries_outliers")
    at.run()
    no_exceptions(at)
    # The demo's defaults (bench/timeseries_demo.py): the synthetic ECG, windows of five beats, trained on half.
    assert at.selectbox(key="s2s:dataset").value == "bundled:ecg_synth"
    assert at.number_input(key="s2s:seq_len").value == 100 and at.slider(key="s2s:train_share").value == 50
    _mit_bih(at)
    assert at.selectbox(key="s2s:dataset").value == "bundled:ecg_mitdb"
    assert at.multiselect(key="s2s:features").value == ["ecg"]
    assert at.selectbox(key="s2s:time").value == "time"
    assert at.selectbox(key="s2s:label").value == "label"
    at.number_input(key="s2s:epochs").set_value(2)
    at.number_input(key="s2s:seq_len").set_value(50)
    at.number_input(key="s2s:latent").set_value(8)
    at.select_slider(key="s2s:overlap").set_value(0.0)
    click_and_finish(at, "s2s:train", "seq2seq")
    return at


def test_results_show_flags_heatmap_windows_and_label_metrics(trained):
    at = trained
    run = at.session_state["job::seq2seq"].view
    assert run.X.shape == (7500, 1) and run.n_train == 6000
    assert run.raw.shape == (7500, 1) and run.window_raw.shape == (150, 50, 1)
    flagged_steps = _count(at, "Flagged steps")
    assert 0 < flagged_steps < 7500
    heatmap = _chart(at, "s2s:heatmap")
    assert heatmap["data"][0]["type"] == "heatmap"
    assert heatmap["data"][0]["y"] == ["ecg"]
    # Centred on the threshold: the colour midpoint is 0 and exactly the buckets holding a flagged step are above it.
    trace = heatmap["data"][0]
    assert trace["zmid"] == 0 and trace["zmin"] == -trace["zmax"]
    z = _array(trace["z"]).reshape(1, -1)
    flagged_buckets = np.maximum.reduceat(run.raw[:, 0] > run.threshold[0], np.arange(0, 7500, 4))
    assert z.shape == (1, 1875) and ((z[0] > 0) == flagged_buckets).all() and (z[0] > 0).sum() > 0
    assert heatmap["layout"]["height"] >= 300  # one feature: a readable band, not a thin strip
    # The series chart plots against the time column and marks exactly the flagged steps.
    series = _chart(at, "s2s:series")
    flagged_trace = next(t for t in series["data"] if t.get("name") == "flagged")
    assert len(_array(flagged_trace["x"])) == flagged_steps
    # Windows ranked by instance score, and point- and window-level metrics from the label column.
    windows = _windows(at)
    assert len(windows) == 150
    assert windows["instance_score"].is_monotonic_decreasing
    assert windows["labelled"].sum() == 8  # samples 6936-7287 touch windows 138-145
    assert [m.label for m in at.metric].count("F1") == 2
    assert [b.proto.label for b in at.get("download_button")] == [
        "Scores per time step CSV", "Window scores CSV", "Detector archive"]
    # The export: one row per input row, in input order, the original columns, then the scores.
    export = _step_export(at)
    assert len(export) == 7500 and export["row"].tolist() == list(range(7500))
    assert list(export.columns[:4]) == ["row", "time", "ecg", "label"] and (export["status"] == "scored").all()
    assert int(export["is_outlier"].sum()) == flagged_steps
    np.testing.assert_allclose(export["ecg_score"], run.raw[:, 0] - run.threshold[0], rtol=1e-5)


def test_moving_a_feature_threshold_changes_the_flagged_count_from_cached_scores(trained):
    at = trained
    run = at.session_state["job::seq2seq"].view
    before = _count(at, "Flagged steps")
    at.slider(key="s2s:feature_percentile:0").set_value(90.0).run()
    no_exceptions(at)
    after = _count(at, "Flagged steps")
    assert after > before
    # The detector (and its archive) carries the chosen threshold: the 90th percentile of the training scores.
    expected = np.percentile(run.raw[:run.n_train, 0], 90.0)
    assert float(run.threshold[0]) == pytest.approx(expected, rel=1e-5)
    assert after == int(np.sum(run.raw[:, 0] > run.threshold[0]))
    assert at.session_state["job::seq2seq"].view is run  # nothing was retrained

    # The global percentile resets every feature's.
    at.slider(key="s2s:percentile").set_value(99.5).run()
    no_exceptions(at)
    assert at.slider(key="s2s:feature_percentile:0").value == pytest.approx(99.5)
    assert _count(at, "Flagged steps") < after


def test_window_score_percentage_and_drill_down(trained):
    at = trained
    at.slider(key="s2s:outlier_perc").set_value(1).run()
    no_exceptions(at)
    flagged_any_step = _count(at, "Flagged windows")
    at.slider(key="s2s:outlier_perc").set_value(100).run()
    no_exceptions(at)
    assert _count(at, "Flagged windows") <= flagged_any_step
    # At 1 % a window's score is its largest feature score: flagged exactly when one of its steps is.
    at.slider(key="s2s:outlier_perc").set_value(1).run()
    windows = _windows(at)
    assert ((windows["flagged_steps"] > 0) == windows["is_outlier"]).all()

    options = at.selectbox(key="s2s:window").options
    assert len(options) == 150
    at.selectbox(key="s2s:window").select_index(3).run()
    no_exceptions(at)
    window = _chart(at, "s2s:window_chart")
    assert len(_array(window["data"][0]["x"])) == 50


def test_bad_choices_show_messages_not_exceptions():
    at = page("timeseries_outliers")
    at.run()
    _mit_bih(at)
    at.multiselect(key="s2s:features").set_value([])
    at.button(key="s2s:train").click().run()
    no_exceptions(at)
    assert any("no feature columns" in e.value for e in at.error)

    at.multiselect(key="s2s:features").set_value(["ecg"])
    at.slider(key="s2s:train_share").set_value(10)
    at.number_input(key="s2s:seq_len").set_value(500)
    at.button(key="s2s:train").click().run()
    no_exceptions(at)
    assert any("fewer than two windows" in e.value for e in at.error)
    assert "job::seq2seq" not in at.session_state


def test_time_and_label_columns_are_never_features():
    at = page("timeseries_outliers")
    at.run()
    _mit_bih(at)
    at.multiselect(key="s2s:features").set_value(["ecg", "time", "label"])
    at.slider(key="s2s:train_share").set_value(10)
    at.number_input(key="s2s:seq_len").set_value(500)  # too long for 750 training steps: stop before training
    at.button(key="s2s:train").click().run()
    no_exceptions(at)
    assert any("left out of the features" in i.value for i in at.info)
    assert any("fewer than two windows" in e.value for e in at.error)


def test_uploaded_multivariate_series_with_dates_out_of_order():
    """An upload with a date column is the default; rows are sorted by time; each feature gets its own threshold."""
    import pandas as pd

    from engine.ingest import table_from_frame

    rng = np.random.default_rng(0)
    steps = np.arange(600)
    frame = pd.DataFrame({
        "when": pd.date_range("2024-01-01", periods=600, freq="h").strftime("%Y-%m-%d %H:%M"),
        "temperature": np.sin(steps * 0.3) + rng.normal(0, 0.05, 600),
        "pressure": np.cos(steps * 0.2) + rng.normal(0, 0.05, 600),
    }).sample(frac=1.0, random_state=0)  # shuffled: the page must put the rows back in time order
    at = page("timeseries_outliers")
    at.session_state["active_table"] = table_from_frame(frame, name="sensors.csv", roles={"when": "time"})
    at.session_state["active_origin"] = "upload"
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="s2s:dataset").value == "upload"
    assert at.selectbox(key="s2s:time").value == "when"
    assert at.multiselect(key="s2s:features").value == ["temperature", "pressure"]
    at.number_input(key="s2s:epochs").set_value(1)
    at.number_input(key="s2s:seq_len").set_value(20)
    at.number_input(key="s2s:latent").set_value(8)
    at.button(key="s2s:train").click().run()
    assert any("sorted by `when`" in i.value for i in at.info)
    run_until_job_done(at, "seq2seq")
    no_exceptions(at)
    run = at.session_state["job::seq2seq"].view
    assert np.all(np.diff(run.time) > np.timedelta64(0))
    assert run.X[0, 0] == pytest.approx(frame.sort_values("when")["temperature"].iloc[0])
    assert _chart(at, "s2s:heatmap")["data"][0]["y"] == ["temperature", "pressure"]
    assert "Against the label column" not in [h.value for h in at.subheader]

    # Lowering only the pressure threshold flags more pressure values and leaves temperature's alone.
    temperature_threshold = float(run.threshold[0])
    before = _count(at, "Flagged feature values")
    at.slider(key="s2s:feature_percentile:1").set_value(60.0).run()
    no_exceptions(at)
    assert _count(at, "Flagged feature values") > before
    assert float(run.threshold[0]) == temperature_threshold
    assert float(run.threshold[1]) == pytest.approx(np.percentile(run.raw[:run.n_train, 1], 60.0), rel=1e-5)


def test_export_joins_back_to_an_upload_with_gaps_and_text_and_one_epoch_gets_a_hint():
    """Rows out of time order, a text column and a missing value: the export still has every input row, in order."""
    import pandas as pd

    from engine.ingest import table_from_frame

    steps = np.arange(300)
    frame = pd.DataFrame({
        "when": steps[::-1],  # newest first
        "level": np.sin(steps * 0.3)[::-1],
        "note": [f"=cell {i}" for i in steps],
    })
    frame.loc[7, "level"] = np.nan
    at = page("timeseries_outliers")
    at.session_state["active_table"] = table_from_frame(frame, name="levels.csv", roles={"when": "time"})
    at.session_state["active_origin"] = "upload"
    at.run()
    assert at.multiselect(key="s2s:features").value == ["level"]
    at.number_input(key="s2s:epochs").set_value(1)
    at.number_input(key="s2s:seq_len").set_value(20)
    at.number_input(key="s2s:latent").set_value(8)
    at.button(key="s2s:train").click().run()
    run_until_job_done(at, "seq2seq")
    no_exceptions(at)
    # One epoch: the page says the model stopped too early to trust.
    assert any("training stopped after epoch 1 of 1" in w.value.lower() and "more epochs" in w.value
               for w in at.warning)

    export = _step_export(at)
    assert len(export) == 300 and export["row"].tolist() == list(range(300))
    assert export["note"].tolist() == frame["note"].tolist() and export["when"].tolist() == frame["when"].tolist()
    assert export.loc[7, "status"] == "skipped" and "missing" in export.loc[7, "reason"]
    assert (export.drop(index=7)["status"] == "scored").all()
    # Each row carries its own step's reconstruction and score: row 0 is the last step in time order.
    run = at.session_state["job::seq2seq"].view
    assert export.loc[0, "step"] == 298 and export.loc[299, "step"] == 0
    assert export.loc[0, "level_score"] == pytest.approx(float(run.raw[298, 0] - run.threshold[0]), rel=1e-5)


def test_cancel_stops_training_and_keeps_nothing():
    at = page("timeseries_outliers")
    at.run()
    at.number_input(key="s2s:epochs").set_value(200)
    at.number_input(key="s2s:seq_len").set_value(50)
    at.number_input(key="s2s:latent").set_value(8)
    at.button(key="s2s:train").click().run()
    at.button(key="cancel::seq2seq").click().run()
    run_until_job_done(at, "seq2seq")
    no_exceptions(at)
    assert at.session_state["job::seq2seq"].state == "cancelled"
    assert any("was cancelled" in w.value for w in at.warning)
    assert "Results" not in [h.value for h in at.header]


def test_in_trusted_mode_a_downloaded_archive_scores_the_series_like_the_model_that_made_it(trained, trusted):
    first = trained.session_state["job::seq2seq"].view
    archive = first.archive_with(first.threshold)

    at = page("timeseries_outliers")
    at.run()
    _mit_bih(at)
    at.file_uploader(key="s2s:saved").upload("seq2seq.lantern.zip", archive, "application/zip")
    at.run()
    no_exceptions(at)
    assert not at.error and "s2s:score_saved" in {b.key for b in at.button}
    at.slider(key="s2s:train_share").set_value(80)  # the form's value goes with the submit below
    second = click_and_finish(at, "s2s:score_saved", "seq2seq").view
    assert second.from_archive and second.seq_len == first.seq_len == 50
    assert second.n_train == first.n_train  # the same share of the series is the thresholds' reference
    np.testing.assert_allclose(second.raw, first.raw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(second.threshold, np.percentile(first.raw[:first.n_train], 99.0, axis=0),
                               rtol=1e-4, atol=1e-5)  # the page's default percentile of the same reference steps
    assert any("thresholds from the first" in c.value for c in at.caption)
