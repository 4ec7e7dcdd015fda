"""Time-series outliers: train an OutlierSeq2Seq on a series, tune per-feature thresholds on cached scores, export.

Layout only: preparation, the run, thresholds and exports are :mod:`workflows.timeseries`; the job is
:mod:`jobs.timeseries`.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

import jobs.timeseries
from engine.errors import DataError
from engine.metrics import score_curves
from engine.od import OutlierSeq2Seq
from ui import archives, charts, downloads, hints, scores, timeseries, training
from ui import data as ui_data
from ui.settings import SETTINGS
from workflows import timeseries as flow
from workflows.timeseries import DEFAULTS, ROW_ORDER, RunContext, Seq2SeqRun

JOB = "seq2seq"
MAX_PLOTTED = 6  # features drawn at once in the series and window charts
HEATMAP_COLUMNS = 2_000


# ------------------------------------------------------------------------------------------------ setup

st.title("Time-series outliers")
st.caption("OutlierSeq2Seq: an LSTM encoder-decoder reconstructs the series window by window, and a second network "
           "learns how large the reconstruction error of each step and feature usually is. A step's **feature "
           "score** is its squared error minus that expected error minus the feature's threshold: above 0 it is "
           "flagged.")

# The bundled synthetic ECG is the default here, unless the active dataset is the user's upload with a time column.
if "s2s:dataset" not in st.session_state and not (
        ui_data.active_origin() == "upload" and ui_data.active_table().time is not None):
    st.session_state["s2s:dataset"] = flow.DEFAULT_DATASET

table, origin = ui_data.choose_table("seq2seq", key="s2s:dataset")
columns = list(table.frame.columns)
dataset_id = f"{origin}|{table.name}|{'|'.join(columns)}"
if st.session_state.get("s2s:dataset_id") != dataset_id:  # another dataset: its own default columns
    st.session_state["s2s:dataset_id"] = dataset_id
    for key in ("s2s:time", "s2s:features", "s2s:label"):
        st.session_state.pop(key, None)

with st.expander("Score with a saved detector instead of training"):
    saved = archives.detector_uploader("s2s:saved", OutlierSeq2Seq)
    if saved is not None:
        st.caption(f"A saved OutlierSeq2Seq for {saved[1].n_features} feature(s) and windows of {saved[1].seq_len} "
                   "steps. Choose the feature columns it was trained on, in the same order, then press **Score with "
                   "the saved detector** below; the thresholds start at percentiles of the share of the series set "
                   "there.")

with st.form("s2s:setup", border=False):
    time_options = [ROW_ORDER] + columns
    time_column = st.selectbox(
        "Time column", time_options, index=time_options.index(table.time) if table.time in columns else 0,
        key="s2s:time", help="Only the x axis of the charts, never fed to the model. Rows are put in time order.")
    features = ui_data.feature_picker(table, key="s2s:features")
    label = ui_data.label_picker(table, key="s2s:label")
    missing = ui_data.missing_policy("s2s:missing")
    train_share = st.slider(
        "Train on the first … % of the series", 10, 100, DEFAULTS.train_share, 5, key="s2s:train_share",
        help="The model learns what normal looks like from the start of the series; the whole series is scored. "
             "Thresholds are percentiles of the training stretch's scores. Keep known anomalies out of it.")
    with st.expander("Model and training settings"):
        cols = st.columns(3)
        seq_len = cols[0].number_input("Window length (seq_len, steps)", 5, flow.MAX_SEQ_LEN, DEFAULTS.seq_len,
                                       key="s2s:seq_len",
                                       help="The model reads and reconstructs windows of this many steps. Make a "
                                            f"window span a pattern or two (at most {flow.MAX_SEQ_LEN:,}).")
        latent_dim = cols[1].number_input("Latent size", 4, flow.MAX_LATENT, DEFAULTS.latent_dim, step=4,
                                          key="s2s:latent",
                                          help="Size of the encoder's summary of a window (at most "
                                               f"{flow.MAX_LATENT}); larger fits more detail and trains slower.")
        overlap = cols[2].select_slider("Training window overlap", list(flow.OVERLAPS), value=DEFAULTS.overlap,
                                        format_func=flow.OVERLAPS.get, key="s2s:overlap",
                                        help="Overlapping windows give more training examples from a short "
                                             "series. Scoring always uses consecutive windows.")
        controls = training.controls("s2s", epochs=DEFAULTS.epochs, batch_size=DEFAULTS.batch_size,
                                     learning_rate=DEFAULTS.learning_rate)
    buttons = st.columns([1, 3]) if saved is not None else [st.container()]
    submitted = buttons[0].form_submit_button("Train", type="primary", icon=":material/model_training:",
                                              key="s2s:train")
    score_saved = saved is not None and buttons[1].form_submit_button(
        "Score with the saved detector", icon=":material/upload_file:", key="s2s:score_saved")

if submitted or score_saved:
    time_name = None if time_column == ROW_ORDER else time_column
    features, note = flow.model_features(features, time_name, label)
    if note:
        st.info(note)
    window = saved[1].seq_len if score_saved else int(seq_len)
    try:
        if score_saved and len(features) != saved[1].n_features:
            raise DataError(f"the saved detector was trained on {saved[1].n_features} feature(s) and {len(features)} "
                            "are selected; choose the columns it was trained on.")
        prepared = flow.prepare(table.frame, features, time_name=time_name, label=label, missing=missing,
                                train_share=train_share, window=window, max_train_rows=SETTINGS.max_train_rows,
                                training=bool(submitted))
    except DataError as exc:
        ui_data.show_data_error(exc)
    else:
        for line in prepared.notes:
            st.info(line)
        if submitted:
            request = jobs.timeseries.FitRequest(
                prepared.X, prepared.n_train, int(seq_len), int(latent_dim), flow.stride_for(seq_len, overlap),
                controls.epochs, controls.batch_size, controls.learning_rate, controls.seed, flow.DEFAULT_PERCENTILE)
            training.start_job(JOB, "Train Seq2Seq", jobs.timeseries.fit_and_score, request,
                               context=RunContext(prepared, table.frame, table.name))
        else:
            request = jobs.timeseries.ScoreRequest(saved[0], prepared.X, prepared.n_train, flow.DEFAULT_PERCENTILE)
            training.start_job(JOB, "Score with the saved Seq2Seq", jobs.timeseries.score, request, kind="score",
                               context=RunContext(prepared, table.frame, f"{table.name} (saved detector)", True))

job = training.panel(JOB)
run: Seq2SeqRun | None = training.outcome(JOB, flow.build_run)


# ------------------------------------------------------------------------------------------------ results

def _feature_key(index: int) -> str:
    return f"s2s:feature_percentile:{index}"


def _apply_global_percentile(n_features: int) -> None:
    """The global percentile sets every feature's; each can then be moved on its own."""
    for index in range(n_features):
        st.session_state[_feature_key(index)] = st.session_state["s2s:percentile"]


def threshold_controls(run: Seq2SeqRun) -> np.ndarray:
    """The global and per-feature percentile sliders; returns the per-feature thresholds (score units)."""
    names = run.features
    if st.session_state.get("s2s:thresholds_for") != run.run_id:  # a new model: start from the global value
        st.session_state["s2s:thresholds_for"] = run.run_id
        for index in range(len(names)):
            st.session_state.pop(_feature_key(index), None)
    overall = st.slider("Threshold percentile, all features", 50.0, 99.9, DEFAULTS.percentile, 0.1, format="%.1f",
                        key="s2s:percentile", on_change=_apply_global_percentile, args=(len(names),),
                        help="Each feature's threshold is this percentile of its scores on the training stretch: "
                             "at 99, about 1 % of the training steps of every feature are flagged. Moving it resets "
                             "the per-feature thresholds below.")
    st.caption("Per feature (start from the value above; move one to make that feature more or less sensitive):")
    percentiles = []
    grid = st.columns(min(3, len(names)))
    for index, name in enumerate(names):
        key = _feature_key(index)
        st.session_state.setdefault(key, overall)
        with grid[index % len(grid)]:
            percentiles.append(st.slider(f"{name}", 50.0, 99.9, step=0.1, format="%.1f", key=key,
                                         help=f"Percentile of {name}'s training scores used as its threshold."))
            threshold = flow.feature_threshold(run, index, percentiles[-1])
            st.caption(f"threshold {threshold:.4g} · {flow.flagged_count(run, index, threshold):,} flagged step(s)")
    return flow.thresholds_at(run, percentiles)


def _when(value) -> str:
    """A time value as people write it (dates without numpy's nanoseconds)."""
    import pandas as pd

    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value))
    return f"{value:,}" if isinstance(value, (int, np.integer)) else str(value)


def drill_down(run: Seq2SeqRun, ranked, scored: flow.Scored) -> None:
    st.subheader("Inspect a window")
    choices = ranked["window"].to_numpy()[:500]
    window = st.selectbox(
        "Window", choices, key="s2s:window",
        format_func=lambda w: (f"window {w} · {run.time_name} {_when(run.time[run.window_start[w]])}–"
                               f"{_when(run.time[run.window_start[w] + run.seq_len - 1])} · score "
                               f"{ranked.loc[w, 'instance_score']:.4g}"
                               + (" · flagged" if ranked.loc[w, "is_outlier"] else "")),
        help="Windows in order of instance score, highest first (top 500).")
    start = int(run.window_start[window])
    window_scores = scored.window_feature_scores[window]
    shown = np.argsort(-window_scores.max(axis=0))[:MAX_PLOTTED]
    names = [run.features[i] for i in shown]
    st.plotly_chart(timeseries.window_figure(
        run.time[start:start + run.seq_len], run.X[start:start + run.seq_len][:, shown],
        run.window_reconstruction[window][:, shown], window_scores[:, shown], names, x_title=run.time_name),
        key="s2s:window_chart")
    if len(run.features) > 1:
        st.plotly_chart(charts.bar_figure(run.features, window_scores.max(axis=0),
                                          f"Largest feature score in window {window}", "feature score"),
                        key="s2s:window_features")
    n_flagged = int(np.sum(np.any(window_scores > 0, axis=1)))
    st.caption(f"Window {window} covers {run.time_name} {_when(run.time[start])}–"
               f"{_when(run.time[start + run.seq_len - 1])}; {n_flagged} of its "
               f"{run.seq_len} steps have a feature above its threshold."
               + ("" if len(run.features) <= MAX_PLOTTED else f" The {MAX_PLOTTED} features with the highest "
                  "scores in this window are drawn."))


@st.fragment
def results(run: Seq2SeqRun) -> None:
    st.header("Results")
    n_steps, n_features = run.X.shape
    st.caption(f"{run.table_name} · {n_features} feature(s) · {n_steps:,} steps in {len(run.window_start):,} "
               f"windows of {run.seq_len} · "
               + (f"thresholds from the first {run.n_train:,} steps" if run.from_archive
                  else f"trained on the first {run.n_train:,} steps"))
    hints.convergence(run.loss, epochs_planned=run.epochs)

    st.subheader("Thresholds")
    thresholds = threshold_controls(run)
    run.threshold = thresholds
    outlier_perc = st.slider(
        "Window score: mean of the top … % of its feature scores (outlier_perc)", 1, 100, DEFAULTS.outlier_perc,
        key="s2s:outlier_perc",
        help="A window's instance score averages its highest feature scores; the window is flagged when that is "
             "above 0. At 1 % a single flagged step is enough; at 100 % (the reference's default) the whole window "
             "must be above the thresholds on average.")
    scored = flow.apply_thresholds(run, thresholds, outlier_perc)

    cols = iter(st.columns(4 if n_features > 1 else 3))
    with next(cols):
        scores.flagged_summary(scored.step_flags, "steps")
    if n_features > 1:
        next(cols).metric("Flagged feature values", f"{int(scored.flags.sum()):,}",
                          help=f"Step × feature cells above their feature's threshold, of {scored.flags.size:,}.")
    with next(cols):
        scores.flagged_summary(scored.window_flags, "windows")
    next(cols).metric("Highest window score", f"{scored.window_scores.max():.4g}",
                      help="The top of the ranking below; above 0 means flagged.")

    plotted = list(range(n_features))
    if n_features > MAX_PLOTTED:
        picked = st.multiselect("Features to draw", run.features, default=run.features[:4], key="s2s:plotted",
                                max_selections=MAX_PLOTTED)
        plotted = [run.features.index(name) for name in picked]
    if plotted:
        st.plotly_chart(timeseries.series_figure(
            run.time, run.X[:, plotted], run.reconstruction[:, plotted], scored.flags[:, plotted],
            [run.features[i] for i in plotted], labelled=None if run.labels is None else run.labels.astype(bool),
            x_title=run.time_name), key="s2s:series")
    else:
        st.info("Pick at least one feature to draw.")
    st.plotly_chart(timeseries.score_heatmap(run.time, scored.feature_scores, run.features, x_title=run.time_name,
                                             max_columns=HEATMAP_COLUMNS), key="s2s:heatmap")
    st.caption("Each row is one feature, coloured against that feature's own threshold: red cells are above it "
               "(flagged), blue cells below it; the deeper the colour, the further from the threshold.")

    st.subheader("Windows ranked by instance score")
    ranked = flow.windows_table(run, scored)
    st.dataframe(ranked, key="s2s:windows", height=280, hide_index=True,
                 column_config={"start_time": st.column_config.Column(f"start ({run.time_name})"),
                                "end_time": st.column_config.Column(f"end ({run.time_name})"),
                                "instance_score": st.column_config.NumberColumn("instance score", format="%.4g"),
                                "is_outlier": st.column_config.CheckboxColumn("flagged"),
                                "flagged_steps": st.column_config.NumberColumn(
                                    "flagged steps", help="Steps of the window with a feature above its threshold"),
                                "top_feature": st.column_config.TextColumn("top feature")})
    st.caption("Click a column header to sort. A window is flagged when its instance score is above 0.")
    drill_down(run, ranked.set_index("window", drop=False), scored)

    if run.labels is not None:
        st.subheader("Against the label column")
        step_tab, window_tab = st.tabs(["Steps", "Windows (labelled when any step is)"])
        with step_tab:
            st.caption("A step is flagged when any of its features is; ROC and PR rank steps by their mean raw "
                       "feature score.")
            scores.label_metrics(run.labels, scored.step_flags, run.step_curves, key="s2s:steps")
        with window_tab:
            scores.label_metrics(run.window_labels, scored.window_flags,
                                 score_curves(run.window_labels, scored.window_scores), key="s2s:window_metrics")

    st.subheader("Export")
    left, middle, right = st.columns(3)
    with left:
        downloads.csv_button("Scores per time step CSV", lambda: flow.step_export(run, scored),
                             "seq2seq_step_scores.csv", key="s2s:feature_csv")
    with middle:
        downloads.csv_button("Window scores CSV", lambda: flow.window_export(run, scored),
                             "seq2seq_window_scores.csv", key="s2s:window_csv")
    with right:
        downloads.archive_button("Detector archive", lambda: run.archive_with(thresholds),
                                 "seq2seq.lantern.zip", key="s2s:archive")
    st.caption("The time-step CSV has one row per row of the input table, in its order: `row` (the row number), "
               "the original columns, `status`/`reason` (rows that could not be scored say why), then each "
               "feature's reconstruction, score and flag, the step's instance score and its window's score.")


if run is not None:
    results(run)
elif job is None:
    st.info("Choose the columns and press **Train**. The bundled synthetic ECG works out of the box: the model "
            "learns from its clean first half, and its `label` column marks three abnormal beats in the second "
            "half. The MIT-BIH excerpt is harder: its abnormal beat only stands out in windows of 400+ samples.")
