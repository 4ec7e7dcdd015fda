"""Tabular outliers: train an OutlierAEGMM, tune the threshold on cached scores, inspect and export."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from engine.errors import DataError
from engine.ingest import feature_matrix
from engine.metrics import ScoreCurves, binary_labels, score_curves
from engine.od import OutlierAEGMM
from ui import archives, charts, downloads, scores, training
from ui import data as ui_data
from ui.settings import SETTINGS
from ui.tasks import ArchivedDetector

JOB = "aegmm"
EXPLAINED_ROWS = 500  # rows offered in "Why is this row unusual?"


@dataclass
class AEGMMRun:
    """What one training job produced; the slider and charts only read it."""

    model: ArchivedDetector  # the trained detector, as the worker sent it back
    columns: list[str]
    frame: pd.DataFrame  # the scored rows: their features (and label), indexed by row number in the table
    X: np.ndarray  # the same rows as the model's float matrix
    scores: np.ndarray  # instance scores of those rows
    train_scores: np.ndarray  # scores of the rows used for training (threshold reference)
    labels: np.ndarray | None
    curves: ScoreCurves | None  # ROC / PR against the labels (threshold-free, computed once)
    table_name: str
    explained: dict[int, np.ndarray]  # row position -> per-feature error, for the highest-scoring rows
    from_archive: bool = False  # scored with a loaded detector: the percentile refers to all scored rows
    threshold: float | None = None  # the slider's threshold on the last run; the detector download carries it

    def feature_errors(self, position: int) -> np.ndarray:
        """Per-feature reconstruction error of the row at ``position`` (precomputed for the rows the page offers)."""
        if position not in self.explained:
            return self.model.load().feature_reconstruction_error(self.X[position:position + 1])[0]
        return self.explained[position]


def _run_from(answer: dict, archive: bytes, columns, frame, X, labels, table_name,
              train_mask: np.ndarray | None = None) -> AEGMMRun:
    """The page's result from a job's answer (scores and the top rows' per-feature errors).

    Without ``train_mask`` (a loaded detector) the threshold percentile refers to all scored rows.
    """
    scores = answer["scores"]
    curves = None if labels is None else score_curves(labels, scores)
    explained = dict(zip(answer["top"].tolist(), answer["top_errors"]))
    reference = scores if train_mask is None else scores[train_mask]
    return AEGMMRun(ArchivedDetector(archive), columns, frame, X, scores, reference, labels, curves, table_name,
                    explained, from_archive=train_mask is None)


def _chosen_rows(table, columns, label, missing):
    """The model's matrix of the chosen columns, the table rows it kept, their 0/1 labels and the rows as shown."""
    X, rows = feature_matrix(table.frame, columns, missing=missing)
    labels = None if label is None else binary_labels(table.frame[label].to_numpy()[rows])
    shown = list(columns) + ([label] if label and label not in columns else [])
    frame = table.frame.iloc[rows][shown].reset_index(drop=True).set_axis(rows, axis=0)
    return X, rows, labels, frame


def train(X, frame, train_mask, labels, n_gmm, controls, table_name, columns) -> None:
    """Start the training job: the model is trained and every row scored by the ``aegmm.fit_and_score`` task."""
    # The "why is this row unusual" picker offers the highest-scoring flagged rows: their errors are computed by
    # the job, once, so that moving the threshold slider never waits for the model.
    params = {**controls.params(), "n_gmm": n_gmm, "explained_rows": EXPLAINED_ROWS}
    training.start_task(JOB, "Train AEGMM", "aegmm.fit_and_score", params, {"X": X, "train_mask": train_mask},
                        lambda values, out: _run_from(out, out["archive"].tobytes(), columns, frame, X, labels,
                                                      table_name, train_mask))


def score_with_saved(archive: bytes, X, frame, labels, table_name, columns) -> None:
    """Start a job scoring every row with a loaded detector archive (``aegmm.score``; trusted mode only).

    The threshold percentile then refers to all scored rows: the archive does not carry its training rows.
    """
    params = {"explained_rows": EXPLAINED_ROWS}
    training.start_task(JOB, "Score with the saved AEGMM", "aegmm.score", params,
                        {"X": X, "archive": np.frombuffer(archive, dtype=np.uint8)},
                        lambda values, out: _run_from(out, archive, columns, frame, X, labels,
                                                      f"{table_name} (saved detector)"),
                        kind="score")


st.title("Tabular outliers")
st.caption("OutlierAEGMM: an autoencoder compresses each row; a Gaussian mixture on the compressed code and the "
           "reconstruction error gives every row an energy. High energy = unusual row.")

table, origin = ui_data.choose_table("aegmm", key="aegmm:dataset", kinds=("tabular",))
with st.expander("Score with a saved detector instead of training"):
    saved = archives.detector_uploader("aegmm:saved", OutlierAEGMM)
    if saved is not None:
        st.caption(f"A saved OutlierAEGMM for {saved[1].n_features_in_} feature(s) and {saved[1].aegmm_.n_gmm} "
                   "mixture component(s). Choose the feature columns it was trained on, in the same order, then press "
                   "**Score with the saved detector** below.")
with st.form("aegmm:setup", border=False):
    columns = ui_data.feature_picker(table, key="aegmm:features")
    label = ui_data.label_picker(table, key="aegmm:label")
    missing = ui_data.missing_policy("aegmm:missing")
    normal_only = st.checkbox("Train only on rows the label calls normal", key="aegmm:normal_only",
                              help="Semi-supervised: needs a label column. Otherwise all rows are used.")
    with st.expander("Model and training settings"):
        n_gmm = st.slider("Mixture components (n_gmm)", 1, 8, 2, key="aegmm:n_gmm")
        controls = training.controls("aegmm", epochs=10, batch_size=1024)
        max_rows = st.number_input("Train on at most this many rows (random sample)", 100, SETTINGS.max_train_rows,
                                   min(50_000, SETTINGS.max_train_rows), step=1000, key="aegmm:max_rows")
    buttons = st.columns([1, 3]) if saved is not None else [st.container()]
    submitted = buttons[0].form_submit_button("Train", type="primary", icon=":material/model_training:",
                                              key="aegmm:train")
    score_saved = saved is not None and buttons[1].form_submit_button(
        "Score with the saved detector", icon=":material/upload_file:", key="aegmm:score_saved")

if submitted:
    try:
        X, rows, labels, frame = _chosen_rows(table, columns, label, missing)
        if normal_only and labels is None:
            raise DataError("training on normal rows only needs a label column; choose one or untick the box.")
        eligible = np.flatnonzero(labels == 0) if normal_only else np.arange(len(X))
        if len(eligible) < 10:
            raise DataError(f"only {len(eligible)} rows are available for training; at least 10 are needed.")
        rng = np.random.default_rng(controls.seed)
        chosen = np.sort(rng.choice(eligible, size=min(len(eligible), int(max_rows)), replace=False))
        train_mask = np.zeros(len(X), dtype=bool)
        train_mask[chosen] = True
    except DataError as exc:
        ui_data.show_data_error(exc)
    else:
        if len(eligible) > max_rows:
            st.info(f"Training on a random sample of {int(max_rows):,} of {len(eligible):,} rows; all rows are scored.")
        train(X, frame, train_mask, labels, n_gmm, controls, table.name, list(columns))

if score_saved:
    archive, detector = saved
    try:
        X, rows, labels, frame = _chosen_rows(table, columns, label, missing)
        if X.shape[1] != detector.n_features_in_:
            raise DataError(f"the saved detector was trained on {detector.n_features_in_} feature(s) and {X.shape[1]} "
                            "are selected; choose the columns it was trained on.")
    except DataError as exc:
        ui_data.show_data_error(exc)
    else:
        score_with_saved(archive, X, frame, labels, table.name, list(columns))

job = training.panel(JOB)
run: AEGMMRun | None = training.result(JOB)


@st.fragment
def results(run: AEGMMRun) -> None:
    st.header("Results")
    st.caption(f"{run.table_name} · {len(run.columns)} features · {len(run.scores):,} rows scored")
    percentile, threshold = scores.percentile_slider("aegmm:percentile", run.train_scores)
    if run.from_archive:
        st.caption("The threshold is a percentile of the scores of all scored rows: the saved detector does not "
                   "carry its training rows.")
    run.threshold = threshold
    flags = run.scores > threshold
    cols = st.columns(3)
    with cols[0]:
        scores.flagged_summary(flags)
    cols[1].metric("Threshold (energy)", f"{threshold:.4g}")
    cols[2].metric("Percentile", f"{percentile:.1f}")
    scores.distribution_charts(run.scores, threshold, flags, key="aegmm", labels=run.labels)
    if run.labels is not None:
        st.subheader("Against the label column")
        scores.label_metrics(run.labels, flags, run.curves, key="aegmm")

    st.subheader("Flagged rows")
    frame = run.frame.assign(instance_score=run.scores)
    flagged = frame[flags].sort_values("instance_score", ascending=False)
    st.dataframe(flagged, key="aegmm:flagged", height=280)
    if not flagged.empty:
        row = st.selectbox("Why is this row unusual?", flagged.index[:EXPLAINED_ROWS], key="aegmm:inspect",
                           format_func=lambda r: f"row {r} · score {frame.loc[r, 'instance_score']:.4g}")
        position = frame.index.get_loc(row)
        errors = run.feature_errors(position)
        st.plotly_chart(charts.bar_figure(run.columns, errors, f"Per-feature reconstruction error of row {row}",
                                          "squared error (standardised units)"), key="aegmm:why")
        st.caption(f"Row {row} has instance score {run.scores[position]:.4g}; large bars are the features the "
                   "autoencoder could not reproduce.")
    st.subheader("Export")
    left, right = st.columns(2)
    with left:
        downloads.csv_button("Scores CSV", lambda: frame.assign(is_outlier=flags.astype(int)),
                             "aegmm_scores.csv", key="aegmm:csv")
    with right:
        downloads.archive_button("Detector archive", lambda: run.model.to_bytes(
            threshold=threshold, feature_names_=[str(c) for c in run.columns]),
                                 "aegmm.lantern.zip", key="aegmm:archive")


if run is not None:
    results(run)
elif job is None:
    st.info("Choose the columns and press **Train**. Bundled Shuttle works out of the box: its `anomaly` column "
            "is the label.")
