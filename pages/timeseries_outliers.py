"""Time-series outliers: train an OutlierSeq2Seq on a series, tune per-feature thresholds on cached scores, export."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from engine.errors import DataError
from engine.ingest import feature_matrix
from engine.metrics import ScoreCurves, binary_labels, score_curves
from engine.od import OutlierSeq2Seq
from engine.od.seq2seq import instance_scores
from ui import archives, charts, downloads, scores, timeseries, training
from ui import data as ui_data
from ui.settings import SETTINGS
from ui.tasks import ArchivedDetector

JOB = "seq2seq"
DEFAULT_DATASET = "bundled:ecg_mitdb"
ROW_ORDER = "(row order)"
MAX_FEATURES = 32
MAX_SEQ_LEN = 1_000
MAX_LATENT = 256
MAX_PLOTTED = 6  # features drawn at once in the series and window charts
HEATMAP_COLUMNS = 2_000
DEFAULT_PERCENTILE = 99.0
DEFAULT_OUTLIER_PERC = 10
OVERLAPS = {0.0: "none", 0.5: "50 %", 0.75: "75 %", 0.875: "87.5 %"}


@dataclass
class Seq2SeqRun:
    """What one training job produced: the detector and every score the result controls re-threshold."""

    model: ArchivedDetector  # the trained detector, as the worker sent it back
    run_id: str  # new for every trained model: the per-feature thresholds start over for it
    features: list[str]
    time: np.ndarray  # x axis of every chart: the time column's values (never fed to the model) or row numbers
    time_name: str
    X: np.ndarray  # the series (n_steps, n_features), original units
    reconstruction: np.ndarray  # per step, original units
    raw: np.ndarray  # per step and feature: squared error − learned threshold estimate (before the threshold)
    window_start: np.ndarray  # first step of every scored window
    window_raw: np.ndarray  # (n_windows, seq_len, n_features): the same raw scores as each window saw them
    window_reconstruction: np.ndarray  # (n_windows, seq_len, n_features), original units
    labels: np.ndarray | None  # per step, 0/1
    window_labels: np.ndarray | None  # 1 when any step of the window is labelled
    step_curves: ScoreCurves | None  # threshold-free ROC / PR of the per-step score against the labels
    n_train: int  # the model trained on steps [0, n_train); thresholds are percentiles of their scores
    table_name: str
    from_archive: bool = False  # scored with a loaded detector: n_train steps are only the thresholds' reference
    threshold: np.ndarray | None = None  # the controls' per-feature thresholds on the last run; the download carries them

    @property
    def seq_len(self) -> int:
        return self.window_raw.shape[1]


def _run_from(out: dict, archive: bytes, X, time_values, time_name, labels, n_train, seq_len, features,
              table_name, from_archive: bool = False) -> Seq2SeqRun:
    """The page's result from a job's answer (reconstructions and raw scores of every step and window)."""
    starts, raw = out["window_start"], out["raw"]
    window_labels, curves = None, None
    if labels is not None:
        labelled_before = np.concatenate([[0], np.cumsum(labels)])
        window_labels = (labelled_before[starts + seq_len] - labelled_before[starts] > 0).astype(int)
        curves = score_curves(labels, instance_scores(raw, 100.0))
    return Seq2SeqRun(ArchivedDetector(archive), uuid.uuid4().hex, list(features), time_values, time_name, X,
                      out["reconstruction"], raw, starts, out["window_raw"], out["window_reconstruction"], labels,
                      window_labels, curves, n_train, table_name, from_archive)


def train(X, time_values, time_name, labels, n_train, seq_len, latent_dim, stride, controls, features,
          table_name) -> None:
    """Start the training job: the model is trained and the series scored (``seq2seq.fit_and_score``)."""
    params = {**controls.params(), "n_train": n_train, "seq_len": seq_len, "latent_dim": latent_dim,
              "stride": stride, "percentile": DEFAULT_PERCENTILE}
    training.start_task(JOB, "Train Seq2Seq", "seq2seq.fit_and_score", params, {"X": X}, lambda values, out: _run_from(
        out, out["archive"].tobytes(), X, time_values, time_name, labels, n_train, seq_len, features, table_name))


def score_with_saved(archive: bytes, seq_len: int, X, time_values, time_name, labels, n_reference, features,
                     table_name) -> None:
    """Start a job scoring the series with a loaded detector archive (``seq2seq.score``; trusted mode only).

    Thresholds start at percentiles of the first ``n_reference`` steps, as after training.
    """
    params = {"n_train": n_reference, "percentile": DEFAULT_PERCENTILE}
    training.start_task(JOB, "Score with the saved Seq2Seq", "seq2seq.score", params,
                        {"X": X, "archive": np.frombuffer(archive, dtype=np.uint8)},
                        lambda values, out: _run_from(out, archive, X, time_values, time_name, labels, n_reference,
                                                      seq_len, features, f"{table_name} (saved detector)", True),
                        kind="score")


def time_axis(frame: pd.DataFrame, column: str | None, rows: np.ndarray) -> np.ndarray:
    """The time column's values at ``rows`` (numbers or dates), or the row numbers; DataError if unusable."""
    if column is None:
        return rows.copy()
    values = frame[column].iloc[rows]
    if values.isna().any():
        raise DataError(f"the time column {column!r} has {int(values.isna().sum())} missing value(s) in the rows "
                        f"used; clean it or choose {ROW_ORDER}.")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy()
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if parsed.isna().any():
        example = values[parsed.isna()].iloc[0]
        raise DataError(f"the time column {column!r} holds values that are neither numbers nor dates (e.g. "
                        f"{str(example)[:40]!r}); choose another column or {ROW_ORDER}.")
    return parsed.to_numpy()


# ------------------------------------------------------------------------------------------------ setup

st.title("Time-series outliers")
st.caption("OutlierSeq2Seq: an LSTM encoder-decoder reconstructs the series window by window, and a second network "
           "learns how large the reconstruction error of each step and feature usually is. A step's **feature "
           "score** is its squared error minus that expected error minus the feature's threshold: above 0 it is "
           "flagged.")

# The bundled MIT-BIH ECG is the default here, unless the active dataset is the user's upload with a time column.
if "s2s:dataset" not in st.session_state and not (
        ui_data.active_origin() == "upload" and ui_data.active_table().time is not None):
    st.session_state["s2s:dataset"] = DEFAULT_DATASET

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
        "Train on the first … % of the series", 10, 100, 80, 5, key="s2s:train_share",
        help="The model learns what normal looks like from the start of the series; the whole series is scored. "
             "Thresholds are percentiles of the training stretch's scores. Keep known anomalies out of it.")
    with st.expander("Model and training settings"):
        cols = st.columns(3)
        seq_len = cols[0].number_input("Window length (seq_len, steps)", 5, MAX_SEQ_LEN, 100, key="s2s:seq_len",
                                       help="The model reads and reconstructs windows of this many steps. Make a "
                                            f"window span a pattern or two (at most {MAX_SEQ_LEN:,}).")
        latent_dim = cols[1].number_input("Latent size", 4, MAX_LATENT, 64, step=4, key="s2s:latent",
                                          help="Size of the encoder's summary of a window (at most "
                                               f"{MAX_LATENT}); larger fits more detail and trains slower.")
        overlap = cols[2].select_slider("Training window overlap", list(OVERLAPS), value=0.875,
                                        format_func=OVERLAPS.get, key="s2s:overlap",
                                        help="Overlapping windows give more training examples from a short "
                                             "series. Scoring always uses consecutive windows.")
        controls = training.controls("s2s", epochs=20, batch_size=64)
    buttons = st.columns([1, 3]) if saved is not None else [st.container()]
    submitted = buttons[0].form_submit_button("Train", type="primary", icon=":material/model_training:",
                                              key="s2s:train")
    score_saved = saved is not None and buttons[1].form_submit_button(
        "Score with the saved detector", icon=":material/upload_file:", key="s2s:score_saved")

if submitted or score_saved:
    time_name = None if time_column == ROW_ORDER else time_column
    dropped = [c for c in features if c in (time_name, label)]
    features = [c for c in features if c not in (time_name, label)]
    if dropped:
        st.info(f"{', '.join(f'`{c}`' for c in dropped)} left out of the features: the time and label columns are "
                "never fed to the model.")
    window = saved[1].seq_len if score_saved else int(seq_len)
    try:
        if len(features) > MAX_FEATURES:
            raise DataError(f"{len(features)} feature columns are selected; at most {MAX_FEATURES} are allowed. "
                            "Leave some out.")
        if score_saved and len(features) != saved[1].n_features:
            raise DataError(f"the saved detector was trained on {saved[1].n_features} feature(s) and {len(features)} "
                            "are selected; choose the columns it was trained on.")
        X, rows = feature_matrix(table.frame, features, missing=missing)
        time_values = time_axis(table.frame, time_name, rows)
        labels = None if label is None else binary_labels(table.frame[label].to_numpy()[rows])
        order = np.argsort(time_values, kind="stable")
        if np.any(order != np.arange(len(order))):
            X, time_values = X[order], time_values[order]
            labels = None if labels is None else labels[order]
            st.info(f"The rows were not in time order; they are sorted by `{time_name}`.")
        n_train = int(round(len(X) * train_share / 100))
        if n_train > SETTINGS.max_train_rows and not score_saved:
            st.info(f"Training on the first {SETTINGS.max_train_rows:,} steps (this server's limit); all "
                    f"{len(X):,} steps are scored.")
            n_train = SETTINGS.max_train_rows
        if n_train < 2 * window:
            raise DataError(f"the {'training' if submitted else 'reference'} stretch has {n_train:,} steps, fewer "
                            f"than two windows of {window} steps; "
                            + ("lower the window length or " if submitted else "")
                            + "use a larger share of the series.")
    except DataError as exc:
        ui_data.show_data_error(exc)
    else:
        if submitted:
            stride = max(1, int(round(seq_len * (1 - overlap))))
            train(X, time_values, time_name or "row", labels, n_train, int(seq_len), int(latent_dim), stride,
                  controls, features, table.name)
        else:
            score_with_saved(saved[0], window, X, time_values, time_name or "row", labels, n_train, features,
                             table.name)

job = training.panel(JOB)
run: Seq2SeqRun | None = training.result(JOB)


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
    overall = st.slider("Threshold percentile, all features", 50.0, 99.9, DEFAULT_PERCENTILE, 0.1, format="%.1f",
                        key="s2s:percentile", on_change=_apply_global_percentile, args=(len(names),),
                        help="Each feature's threshold is this percentile of its scores on the training stretch: "
                             "at 99, about 1 % of the training steps of every feature are flagged. Moving it resets "
                             "the per-feature thresholds below.")
    st.caption("Per feature (start from the value above; move one to make that feature more or less sensitive):")
    thresholds = np.empty(len(names), dtype=np.float32)
    grid = st.columns(min(3, len(names)))
    for index, name in enumerate(names):
        key = _feature_key(index)
        st.session_state.setdefault(key, overall)
        with grid[index % len(grid)]:
            percentile = st.slider(f"{name}", 50.0, 99.9, step=0.1, format="%.1f", key=key,
                                   help=f"Percentile of {name}'s training scores used as its threshold.")
            thresholds[index] = np.percentile(run.raw[:run.n_train, index], percentile)
            n_flagged = int(np.sum(run.raw[:, index] > thresholds[index]))
            st.caption(f"threshold {thresholds[index]:.4g} · {n_flagged:,} flagged step(s)")
    return thresholds


def windows_table(run: Seq2SeqRun, feature_scores_by_window: np.ndarray, window_scores: np.ndarray,
                  window_flags: np.ndarray) -> pd.DataFrame:
    """One row per window, highest instance score first."""
    starts = run.window_start
    frame = pd.DataFrame({
        "window": np.arange(len(starts)),
        "start_time": run.time[starts],
        "end_time": run.time[starts + run.seq_len - 1],
        "instance_score": window_scores,
        "is_outlier": window_flags,
        "flagged_steps": np.any(feature_scores_by_window > 0, axis=2).sum(axis=1),
    })
    if len(run.features) > 1:
        top = np.argmax(feature_scores_by_window.max(axis=1), axis=1)
        frame["top_feature"] = np.asarray(run.features, dtype=object)[top]
    if run.window_labels is not None:
        frame["labelled"] = run.window_labels.astype(bool)
    return frame.sort_values("instance_score", ascending=False)


def feature_scores_csv(run: Seq2SeqRun, feature_scores: np.ndarray, flags: np.ndarray) -> pd.DataFrame:
    n_steps, n_features = run.X.shape
    frame = pd.DataFrame({
        "time": np.repeat(run.time, n_features),
        "feature": np.tile(np.asarray(run.features, dtype=object), n_steps),
        "value": run.X.reshape(-1),
        "reconstruction": run.reconstruction.reshape(-1),
        "score": feature_scores.reshape(-1),
        "is_outlier": flags.reshape(-1).astype(int),
    })
    if run.labels is not None:
        frame["label"] = np.repeat(run.labels, n_features)
    return frame


def _when(value) -> str:
    """A time value as people write it (dates without numpy's nanoseconds)."""
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value))
    return f"{value:,}" if isinstance(value, (int, np.integer)) else str(value)


def drill_down(run: Seq2SeqRun, ranked: pd.DataFrame, feature_scores_by_window: np.ndarray) -> None:
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
    window_scores = feature_scores_by_window[window]
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

    st.subheader("Thresholds")
    thresholds = threshold_controls(run)
    run.threshold = thresholds
    feature_scores = run.raw - thresholds
    flags = feature_scores > 0
    step_flags = flags.any(axis=1)
    outlier_perc = st.slider(
        "Window score: mean of the top … % of its feature scores (outlier_perc)", 1, 100, DEFAULT_OUTLIER_PERC,
        key="s2s:outlier_perc",
        help="A window's instance score averages its highest feature scores; the window is flagged when that is "
             "above 0. At 1 % a single flagged step is enough; at 100 % (the reference's default) the whole window "
             "must be above the thresholds on average.")
    feature_scores_by_window = run.window_raw - thresholds
    window_scores = instance_scores(feature_scores_by_window, outlier_perc)
    window_flags = window_scores > 0

    cols = iter(st.columns(4 if n_features > 1 else 3))
    with next(cols):
        scores.flagged_summary(step_flags, "steps")
    if n_features > 1:
        next(cols).metric("Flagged feature values", f"{int(flags.sum()):,}",
                          help=f"Step × feature cells above their feature's threshold, of {flags.size:,}.")
    with next(cols):
        scores.flagged_summary(window_flags, "windows")
    next(cols).metric("Highest window score", f"{window_scores.max():.4g}",
                      help="The top of the ranking below; above 0 means flagged.")

    plotted = list(range(n_features))
    if n_features > MAX_PLOTTED:
        picked = st.multiselect("Features to draw", run.features, default=run.features[:4], key="s2s:plotted",
                                max_selections=MAX_PLOTTED)
        plotted = [run.features.index(name) for name in picked]
    if plotted:
        st.plotly_chart(timeseries.series_figure(
            run.time, run.X[:, plotted], run.reconstruction[:, plotted], flags[:, plotted],
            [run.features[i] for i in plotted], labelled=None if run.labels is None else run.labels.astype(bool),
            x_title=run.time_name), key="s2s:series")
    else:
        st.info("Pick at least one feature to draw.")
    st.plotly_chart(timeseries.score_heatmap(run.time, feature_scores, run.features, x_title=run.time_name,
                                             max_columns=HEATMAP_COLUMNS), key="s2s:heatmap")

    st.subheader("Windows ranked by instance score")
    ranked = windows_table(run, feature_scores_by_window, window_scores, window_flags)
    st.dataframe(ranked, key="s2s:windows", height=280, hide_index=True,
                 column_config={"start_time": st.column_config.Column(f"start ({run.time_name})"),
                                "end_time": st.column_config.Column(f"end ({run.time_name})"),
                                "instance_score": st.column_config.NumberColumn("instance score", format="%.4g"),
                                "is_outlier": st.column_config.CheckboxColumn("flagged"),
                                "flagged_steps": st.column_config.NumberColumn(
                                    "flagged steps", help="Steps of the window with a feature above its threshold"),
                                "top_feature": st.column_config.TextColumn("top feature")})
    st.caption("Click a column header to sort. A window is flagged when its instance score is above 0.")
    drill_down(run, ranked.set_index("window", drop=False), feature_scores_by_window)

    if run.labels is not None:
        st.subheader("Against the label column")
        step_tab, window_tab = st.tabs(["Steps", "Windows (labelled when any step is)"])
        with step_tab:
            st.caption("A step is flagged when any of its features is; ROC and PR rank steps by their mean raw "
                       "feature score.")
            scores.label_metrics(run.labels, step_flags, run.step_curves, key="s2s:steps")
        with window_tab:
            scores.label_metrics(run.window_labels, window_flags, score_curves(run.window_labels, window_scores),
                                 key="s2s:window_metrics")

    st.subheader("Export")
    left, middle, right = st.columns(3)
    with left:
        downloads.csv_button("Feature scores CSV", lambda: feature_scores_csv(run, feature_scores, flags),
                             "seq2seq_feature_scores.csv", key="s2s:feature_csv")
    with middle:
        downloads.csv_button("Window scores CSV", lambda: ranked.sort_values("window"),
                             "seq2seq_window_scores.csv", key="s2s:window_csv")
    with right:
        downloads.archive_button("Detector archive", lambda: run.model.to_bytes(
            threshold=thresholds, feature_names_=[str(c) for c in run.features]),
                                 "seq2seq.lantern.zip", key="s2s:archive")


if run is not None:
    results(run)
elif job is None:
    st.info("Choose the columns and press **Train**. The bundled MIT-BIH ECG works out of the box: its `label` "
            "column marks one abnormal stretch near the end, after the first 80 % the model trains on.")
