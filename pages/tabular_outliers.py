"""Tabular outliers: train an OutlierAEGMM, tune the threshold on cached scores, inspect and export (layout only).

The work lives elsewhere: preparation, the run view, threshold maths and the export in :mod:`workflows.tabular`;
training and scoring in :mod:`jobs.tabular`, run by ``training.start_job``.
"""

import streamlit as st

import jobs.tabular
from engine.errors import DataError
from engine.od import OutlierAEGMM
from ui import archives, charts, downloads, hints, scores, training
from ui import data as ui_data
from ui.settings import SETTINGS
from workflows import tabular as wf

JOB = "aegmm"

st.title("Tabular outliers")
st.caption("OutlierAEGMM: an autoencoder compresses each row; a Gaussian mixture on the compressed code and the "
           "reconstruction error gives every row an energy. High energy = unusual row.")

table, origin = ui_data.choose_table("aegmm", key="aegmm:dataset", kinds=("tabular",))
with st.expander("Score with a saved detector instead of training"):
    saved = archives.detector_uploader("aegmm:saved", OutlierAEGMM)
    if saved is not None:
        st.caption(f"A saved OutlierAEGMM for {saved[1].n_features_in_} input(s) and {saved[1].aegmm_.n_gmm} "
                   "mixture component(s). Choose the feature columns it was trained on, then press "
                   "**Score with the saved detector** below. It keeps the threshold it was saved with.")
with st.form("aegmm:setup", border=False):
    columns = ui_data.feature_picker(table, key="aegmm:features", categorical=True)
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
        prepared, train_mask, n_eligible = wf.prepare_training(
            table.frame, columns, label, missing, normal_only=normal_only, max_rows=int(max_rows), seed=controls.seed)
    except DataError as exc:
        ui_data.show_data_error(exc)
    else:
        if n_eligible > max_rows:
            st.info(f"Training on a random sample of {int(max_rows):,} of {n_eligible:,} rows; all rows are scored.")
        request = jobs.tabular.FitRequest(
            X=prepared.X, train_mask=train_mask, n_gmm=int(n_gmm), epochs=controls.epochs,
            batch_size=controls.batch_size, learning_rate=controls.learning_rate, seed=controls.seed,
            feature_names=prepared.feature_names, preprocessing=prepared.preprocessing)
        training.start_job(JOB, "Train AEGMM", jobs.tabular.fit_and_score, request,
                           context=wf.RunContext(prepared, table.name, train_mask))

if score_saved:
    archive, detector = saved
    try:
        prepared = wf.prepare_scoring(table.frame, columns, label, missing, detector)
    except DataError as exc:
        ui_data.show_data_error(exc)
    else:
        training.start_job(JOB, "Score with the saved AEGMM", jobs.tabular.score,
                           jobs.tabular.ScoreRequest(X=prepared.X, archive=archive), kind="score",
                           context=wf.RunContext(prepared, table.name))

job = training.panel(JOB)
run: wf.AEGMMRun | None = training.outcome(JOB, wf.build_run)


@st.fragment
def results(run: wf.AEGMMRun) -> None:
    st.header("Results")
    st.caption(f"{run.table_name} · {len(run.prepared.numeric) + len(run.prepared.categorical)} feature column(s) "
               f"({len(run.columns)} model inputs) · {len(run.scores):,} rows scored")
    hints.job_convergence(JOB)
    for sentence in (wf.skipped_sentence(run.prepared), wf.unseen_sentence(run.prepared)):
        if sentence:
            st.info(sentence, icon=":material/info:")
    reference_help = None if not run.from_archive else (
        "The threshold is this percentile of the training rows' scores, as the saved detector keeps them: at 95, "
        "5 % of the training rows scored above it." if run.reference_is_training else
        "This older archive has no training scores: the threshold is this percentile of the scored rows.")
    percentile, _ = scores.percentile_slider("aegmm:percentile", run.reference, default=run.start_percentile(),
                                             run_token=run.token, help=reference_help)
    threshold = run.threshold_for(percentile)
    run.threshold, run.percentile = threshold, percentile
    flags = run.flags(threshold)
    cols = st.columns(3)
    with cols[0]:
        scores.flagged_summary(flags)
    cols[1].metric("Threshold (energy)", f"{threshold:.4g}")
    cols[2].metric("Percentile", f"{percentile:.1f}")
    if run.from_archive and run.reference_is_training:
        st.caption(f"The saved detector's threshold {run.saved_threshold:.4g} (the {run.start_percentile():.1f}th "
                   f"percentile of its training scores) is where the slider starts. At {threshold:.4g}, "
                   f"{100 - wf.percentile_of(run.reference, threshold):.1f} % of the training rows and "
                   f"{100 * wf.share_above(run.scores, threshold):.1f} % of this file's rows score above it.")
        scores.reference_overlay(run.reference, run.scores, threshold, key="aegmm")
    elif run.from_archive:
        st.caption("This saved detector does not carry its training scores (an older archive): the percentile "
                   "refers to the scores of all scored rows; the slider starts at its saved threshold.")
    scores.distribution_charts(run.scores, threshold, flags, key="aegmm", labels=run.labels)
    if run.labels is not None:
        st.subheader("Against the label column")
        scores.label_metrics(run.labels, flags, run.curves, key="aegmm")

    st.subheader("Flagged rows")
    frame = run.frame.assign(instance_score=run.scores)
    flagged = frame[flags].sort_values("instance_score", ascending=False)
    st.caption("Row numbers are the rows of the file (the `row` column of the scores CSV).")
    st.dataframe(flagged, key="aegmm:flagged", height=280)
    if not flagged.empty:
        row = st.selectbox("Why is this row unusual?", flagged.index[:wf.EXPLAINED_ROWS], key="aegmm:inspect",
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
        downloads.csv_button("Scores CSV", lambda: wf.scores_export(run, threshold),
                             "aegmm_scores.csv", key="aegmm:csv")
        st.caption("One line per row of the file, in order: `row`, every column, `status`/`reason`, the score and "
                   "`is_outlier`. Join it to your file on `row` (its position, from 0).")
    with right:
        downloads.archive_button("Detector archive", lambda: run.model.to_bytes(
            threshold=threshold, threshold_perc_=float(percentile)), "aegmm.lantern.zip", key="aegmm:archive")


if run is not None:
    results(run)
elif job is None:
    st.info(wf.start_hint(table.name, origin, table.label))
