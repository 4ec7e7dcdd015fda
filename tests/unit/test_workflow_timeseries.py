"""workflows.timeseries: preparing a series, re-thresholding cached scores by the engine rule, joined-back exports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError
from engine.od.seq2seq import instance_scores
from workflows import timeseries as flow


def _frame() -> pd.DataFrame:
    """Ten rows out of time order, a text column, a missing value in row 4."""
    return pd.DataFrame({
        "when": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        "x": [9.0, 8.0, 7.0, 6.0, np.nan, 4.0, 3.0, 2.0, 1.0, 0.0],
        "y": np.arange(10.0) * 10,
        "site": ["a", "=b", "c", "d", "e", "f", "g", "h", "i", "j"],
        "label": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
    })


def _run(prepared: flow.Prepared, source: pd.DataFrame, seq_len: int = 3) -> flow.Seq2SeqRun:
    """A run with made-up scores (no model): raw score = the step's position in time order, per feature."""
    n, f = prepared.X.shape
    raw = np.repeat(np.arange(n, dtype=np.float32)[:, None], f, axis=1)
    raw[:, 1:] *= -1  # later features never above 0
    starts = np.append(np.arange(n // seq_len) * seq_len, [n - seq_len] if n % seq_len else [])
    starts = starts.astype(int)
    windows = np.stack([raw[s:s + seq_len] for s in starts])
    answer = type("Answer", (), dict(archive=b"", reconstruction=prepared.X * 0.5, raw=raw, window_start=starts,
                                     window_raw=windows, window_reconstruction=windows, seq_len=seq_len,
                                     loss=[1.0, 0.5], epochs=2))
    return flow.build_run(answer, flow.RunContext(prepared, source, "t"))


def test_model_features_leave_out_time_and_label_columns_with_a_note():
    kept, note = flow.model_features(["x", "when", "label", "y"], "when", "label")
    assert kept == ["x", "y"] and "`when`, `label` left out" in note
    assert flow.model_features(["x"], None, None) == (["x"], "")


def test_prepare_sorts_by_time_drops_missing_rows_and_says_why():
    frame = _frame()
    prepared = flow.prepare(frame, ["x", "y"], time_name="when", label="label", missing="drop", train_share=100,
                            window=3)
    assert prepared.rows.tolist() == [9, 8, 7, 6, 5, 3, 2, 1, 0]  # time order, row 4 dropped
    assert prepared.X[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0]
    assert prepared.labels.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert prepared.reasons == {4: "missing or infinite value in x"} and not prepared.imputed
    assert any("sorted by `when`" in note for note in prepared.notes)
    assert prepared.n_train == 9 and prepared.time_name == "when"


def test_prepare_with_median_fill_records_the_rows_it_filled():
    prepared = flow.prepare(_frame(), ["x"], time_name=None, label=None, missing="median", train_share=50, window=2)
    assert prepared.imputed == {4: "median of x"} and not prepared.reasons
    assert prepared.rows.tolist() == list(range(10)) and prepared.time_name == "row" and prepared.n_train == 5


def test_prepare_refuses_a_training_stretch_shorter_than_two_windows():
    with pytest.raises(DataError, match="fewer than two windows of 4 steps; lower the window length"):
        flow.prepare(_frame(), ["y"], time_name=None, label=None, missing="drop", train_share=70, window=4)
    with pytest.raises(DataError, match="at most 32"):
        flow.prepare(pd.DataFrame(np.zeros((10, 33))).add_prefix("c"), [f"c{i}" for i in range(33)], time_name=None,
                     label=None, missing="drop", train_share=100, window=2)


def test_prepare_caps_the_training_stretch_at_the_server_limit():
    prepared = flow.prepare(_frame(), ["y"], time_name=None, label=None, missing="drop", train_share=100, window=2,
                            max_train_rows=5)
    assert prepared.n_train == 5 and any("this server's limit" in note for note in prepared.notes)


def test_window_labels_and_the_window_each_step_is_scored_in():
    assert flow.window_labels(np.array([0, 0, 0, 0, 0, 1, 0]), np.array([0, 3, 4]), 3).tolist() == [0, 1, 1]
    assert flow.window_of_step(10, 3, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert flow.stride_for(100, 0.875) == 12 and flow.stride_for(3, 0.875) == 1


def test_thresholds_and_flags_follow_the_engine_rule():
    prepared = flow.prepare(_frame(), ["x", "y"], time_name="when", label="label", missing="drop", train_share=100,
                            window=3)
    run = _run(prepared, _frame())
    threshold = flow.thresholds_at(run, [50.0, 90.0])
    assert threshold[0] == pytest.approx(np.percentile(run.raw[:, 0], 50.0))
    assert threshold[1] == pytest.approx(np.percentile(run.raw[:, 1], 90.0))
    scored = flow.apply_thresholds(run, threshold, outlier_perc=50)
    np.testing.assert_allclose(scored.feature_scores, run.raw - threshold)
    assert scored.flags.tolist() == (run.raw - threshold > 0).tolist()
    np.testing.assert_allclose(scored.window_scores, instance_scores(run.window_raw - threshold, 50))
    assert scored.window_flags.tolist() == (scored.window_scores > 0).tolist()
    assert scored.step_flags.tolist() == [True] + [False] * 4 + [True] * 4  # y at step 0; x at steps 5..8
    assert flow.flagged_count(run, 0, float(threshold[0])) == 4


def test_windows_table_ranks_windows_and_marks_the_labelled_ones():
    prepared = flow.prepare(_frame(), ["x", "y"], time_name="when", label="label", missing="drop", train_share=100,
                            window=3)
    run = _run(prepared, _frame())
    scored = flow.apply_thresholds(run, np.zeros(2, np.float32), 50)  # the top half: x's scores
    table = flow.windows_table(run, scored)
    assert table["instance_score"].is_monotonic_decreasing
    assert table["window"].tolist() == [2, 1, 0]
    assert table.set_index("window")["labelled"].to_dict() == {0: True, 1: False, 2: False}
    assert flow.window_export(run, scored)["window"].tolist() == [0, 1, 2]
    assert flow.window_ranking(scored.window_scores, run.window_labels) == (0.0, 3)


def test_step_export_has_one_row_per_input_row_in_input_order_with_the_original_columns():
    frame = _frame()
    prepared = flow.prepare(frame, ["x", "y"], time_name="when", label="label", missing="drop", train_share=100,
                            window=3)
    run = _run(prepared, frame)
    scored = flow.apply_thresholds(run, np.array([4.5, 0.0], np.float32), 10)
    export = flow.step_export(run, scored)
    assert len(export) == len(frame) and export["row"].tolist() == list(range(10))
    assert list(export.columns[:6]) == ["row", "when", "x", "y", "site", "label"]
    assert export["site"].tolist() == frame["site"].tolist()  # the text column comes back, untouched
    assert export["status"].tolist() == ["scored"] * 4 + ["skipped"] + ["scored"] * 5
    assert export.loc[4, "reason"] == "missing or infinite value in x" and np.isnan(export.loc[4, "x_score"])
    # Each scored row carries its own step's scores: row 9 (when = 0) is the first step in time order.
    assert export.loc[9, "step"] == 0 and export.loc[0, "step"] == 8
    assert export.loc[0, "x_score"] == pytest.approx(8 - 4.5) and bool(export.loc[0, "x_flagged"])
    assert export.loc[0, "x_reconstruction"] == pytest.approx(4.5)
    assert int(export["is_outlier"].fillna(False).astype(bool).sum()) == int(scored.step_flags.sum())
    assert export.loc[0, "window"] == 2 and export.loc[0, "window_score"] == pytest.approx(scored.window_scores[2])


def test_step_export_says_which_rows_were_filled_in():
    frame = _frame()
    prepared = flow.prepare(frame, ["x"], time_name=None, label=None, missing="median", train_share=100, window=3)
    export = flow.step_export(_run(prepared, frame), flow.apply_thresholds(_run(prepared, frame), np.zeros(1), 100))
    assert (export["status"] == "scored").all()
    assert export["imputed"].tolist() == [""] * 4 + ["median of x"] + [""] * 5
