"""Adversarial detection: train a classifier, distil a detector from it, attack the test rows, measure detection.

Layout only: the logic is in :mod:`workflows.adversarial`, the heavy work in :mod:`jobs.models` and
:mod:`jobs.adversarial`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import jobs.adversarial
import jobs.models
from engine.datasets import get_dataset
from engine.errors import DataError, ModelError
from jobs.models import FitSettings
from ui import charts, downloads, hints, images, own_model, training
from ui import data as ui_data
from ui.settings import SETTINGS
from workflows import adversarial as wf
from workflows.adversarial import HELP

CLASSIFIER_JOB = "adv-classifier"
DISTIL_JOB = "adv-distil"
ATTACK_JOB = "adv-attack"
DEFAULT_DATASET = "bundled:digits"


def fit_settings(controls: training.TrainingControls) -> FitSettings:
    return FitSettings(controls.epochs, controls.batch_size, controls.learning_rate, controls.seed)


def start_classifier(data: wf.Prepared, network: str | None, controls, own, class_map) -> None:
    """Step 1: train the classifier here, or measure the uploaded one."""
    if own is not None:
        job = training.start_job(
            CLASSIFIER_JOB, f"Use {own.file_name} on {data.table_name}", jobs.models.uploaded_accuracy,
            wf.uploaded_request(data, own, trusted=SETTINGS.trusted_mode, max_mb=SETTINGS.max_model_mb),
            context=(data, own, class_map))
    else:
        job = training.start_job(CLASSIFIER_JOB, f"Train classifier on {data.table_name}",
                                 jobs.models.train_classifier_job,
                                 wf.classifier_request(data, network, fit_settings(controls)), context=(data, network))
    if job is not None:
        training.forget(DISTIL_JOB)  # a detector and an attack belong to the classifier they were made for
        training.forget(ATTACK_JOB)


# ------------------------------------------------------------------------------------------------ results


@st.fragment
def results(run: wf.AttackRun) -> None:
    det_run, data, result = run.detector_run, run.data, run.result
    st.header("Results")
    st.caption(f"{run.description} · {len(run):,} test rows of {data.table_name} · mean change L∞ "
               f"{np.mean(result.linf):.3g}, L2 {np.mean(result.l2):.3g} (in [0, 1]-scaled units)")
    for note in run.notes:
        st.warning(note[:1].upper() + note[1:], icon=":material/timer:")

    cols = st.columns(4)
    cols[0].metric("Classifier accuracy, clean", f"{result.accuracy_clean:.3f}", help="On the original test rows.")
    cols[1].metric("Classifier accuracy, attacked", f"{result.accuracy_adv:.3f}",
                   delta=f"{result.accuracy_adv - result.accuracy_clean:+.3f}",
                   help="On the same rows after the attack.")
    cols[2].metric("Harmful rate", f"{result.harmful_rate:.1%}",
                   help="Share of attacked rows whose predicted class the attack changed.")
    cols[3].metric("Detection ROC-AUC", "n/a" if run.curves is None else f"{run.curves.roc_auc:.3f}",
                   help="How well the score separates clean from attacked rows (1 = perfectly, 0.5 = chance)"
                        + ("" if run.harmful_auc is None else
                           f"; {run.harmful_auc:.3f} against the harmful attacked rows only."))

    percentile = st.slider("Threshold percentile of held-out clean scores", 50.0, 99.9, 95.0, 0.1,
                           key="adv:percentile", help=HELP["percentile"]
                           + f" ({len(det_run.calibration_scores):,} held-out clean rows.)")
    det = wf.detection(run, wf.threshold(det_run.calibration_scores, percentile))
    cols = st.columns(4)
    cols[0].metric("Detection rate", f"{det.detection_rate:.1%}", help="Share of attacked rows flagged as adversarial.")
    cols[1].metric("Detection rate, harmful only",
                   "n/a" if det.harmful_detection_rate is None else f"{det.harmful_detection_rate:.1%}",
                   help="Share of the attacked rows whose prediction changed that are flagged.")
    cols[2].metric("False-alarm rate", f"{det.false_alarm_rate:.1%}", help="Share of clean test rows flagged.")
    cols[3].metric("Threshold (score)", f"{det.threshold:.4g}")

    left, right = st.columns(2)
    with left:
        log_scale = st.toggle("Log-scale scores", value=True, key="adv:log",
                              help="Clean scores sit near 0; a log scale shows both groups.")
        st.plotly_chart(wf.score_histograms(run.scores_clean, run.scores_adv, det.threshold, log_scale),
                        key="adv:hist")
    with right:
        if run.curves is not None:
            st.plotly_chart(wf.roc_with_point(run.curves, det.false_alarm_rate, det.detection_rate), key="adv:roc")
        else:
            st.info("The ROC curve needs both clean and attacked rows.")

    example(run, det)

    st.subheader("Export")
    left, right = st.columns(2)
    with left:
        downloads.csv_button("Scores CSV", lambda: wf.export_frame(run, det), "adversarial_scores.csv",
                             key="adv:csv")
    st.caption(f"One line per row of {data.table_name}, in its order, with the row number shown here and every "
               "original column; the attacked test rows add both models' predictions and the scores and flags of "
               "the original and the attacked input, the others say in `reason` why they were not attacked.")
    if det_run.archive is None:
        st.caption("No detector archive for an uploaded model: Lantern's archive rebuilds the classifier from its own "
                   "format, and your model is not in it. The scores CSV holds every score and prediction.")
        return
    with right:
        downloads.archive_button("Detector archive", lambda: det_run.archive_with_threshold(det.threshold),
                                 "model_distillation.lantern.zip", key="adv:archive")
    st.caption("The archive holds the classifier, the distilled model and the threshold; both take rows scaled "
               "to [0, 1] as on this page.")


def example(run: wf.AttackRun, det: wf.Detection) -> None:
    """One attacked row, before and after: first a row that shows the method working."""
    data, result = run.data, run.result
    st.subheader("One test row, before and after the attack")
    groups = wf.example_groups(run, det)
    note = wf.no_example_note(run, det)
    if note:
        st.info(note, icon=":material/info:")
    which = st.radio("Show", list(groups), format_func=lambda k: f"{groups[k][0]} ({len(groups[k][1]):,})",
                     index=list(groups).index(wf.default_group(groups)), horizontal=True, key="adv:filter",
                     help="The first group shows the method at work: rows the classifier gets right, that the "
                          "attack fools, and that the detector flags.")
    candidates = groups[which][1]
    if len(candidates) == 0:
        st.info("No test row in this group at the current threshold.")
        return
    i = int(st.selectbox("Attacked row", candidates[:500], format_func=lambda k: wf.row_label(run, det, k),
                         key="adv:instance", help="Rows are numbered as in the table and the scores CSV; the "
                                                  "first 500 rows of the group are offered."))
    names, row = data.class_names, int(run.rows[i])
    if data.image_shape is not None:
        st.plotly_chart(images.image_grid(
            [result.X_clean[i], result.X_adv[i], result.X_adv[i] - result.X_clean[i]],
            [f"original: {names[result.pred_clean[i]]}", f"adversarial: {names[result.pred_adv[i]]}",
             "perturbation (adversarial − original)"],
            data.image_shape, diverging=[False, False, True], value_range=(0.0, 1.0)), key="adv:images")
    else:
        raw_clean, raw_adv = data.raw(result.X_clean[i]), data.raw(result.X_adv[i])
        st.plotly_chart(charts.bar_figure(data.feature_names, raw_adv - raw_clean, f"Per-feature change of row {row}",
                                          "adversarial − original (table units)"), key="adv:changes")
        with st.expander("Feature values"):
            st.dataframe(pd.DataFrame({"feature": data.feature_names, "original": raw_clean, "adversarial": raw_adv,
                                       "change": raw_adv - raw_clean}), hide_index=True, key="adv:values")
    st.dataframe(wf.predictions_table(run, det, i), hide_index=True, key="adv:predictions")
    st.markdown(wf.example_sentence(run, det, i))
    st.caption(f"{wf.made_against(run)} The distilled model learned the classifier's probabilities softened by the "
               f"temperature (T = {run.detector_run.temperature:g}), so it is usually less sure than the classifier; "
               "the score measures how far apart the two models' probabilities are.")


# ------------------------------------------------------------------------------------------------ page


st.title("Adversarial detection")
st.caption("Train a classifier, distil a second model from it with ModelDistillation, then attack the classifier "
           "with FGSM or PGD. Inputs made to fool the classifier move its prediction far more than the distilled "
           "model's; their disagreement is the adversarial score.")

st.subheader("1 · Data and classifier")
table, origin = ui_data.choose_table("distillation", key="adv:dataset", default=DEFAULT_DATASET, needs_label=True)
columns = list(table.frame.columns)
feature_roles = [c for c in columns if table.roles.get(c, "feature") == "feature"]
if origin.startswith("bundled:"):
    image_shape = get_dataset(origin.split(":", 1)[1]).image_shape
else:  # an upload whose features are pixel0 .. pixel{n-1} with n a square is shown as images
    image_shape = images.square_image_shape(feature_roles)
dataset_id = f"{origin}|{table.name}|{'|'.join(columns[:50])}|{len(columns)}"
if st.session_state.get("adv:dataset_id") != dataset_id:  # another dataset: fresh pickers
    st.session_state["adv:dataset_id"] = dataset_id
    for key in ("adv:label", "adv:features", "adv:network"):
        st.session_state.pop(key, None)
label_default = columns.index(table.label) if table.label in columns else 0
if image_shape is not None:
    st.caption(f"{table.name}: images of {image_shape[0]} × {image_shape[1]} pixels, one per row"
               + (f"; the label is `{table.label}`." if table.label else "."))

source, own = own_model.choose_model("adv", help="Train one on the chosen table, or upload a classifier you "
                                                 "trained elsewhere: the detector is distilled from it and the "
                                                 "attack aims at it.")
if own is not None:
    st.caption(("The model names its inputs, so they are read from the table by name. "
                if own.predictor.feature_names else
                f"Choose its {own.predictor.n_features} feature column(s) below, in the order it was trained on. ")
               + "It gets them in the table's units; the page scales them to [0, 1] for the attack and maps "
                 "them back. "
               + ("A Keras model is attacked directly (white box)." if own.white_box else
                  "It has no gradients (black box): the attack is made against the distilled model and then "
                  "given to your model (a transfer attack)."))

with st.form("adv:setup", border=False):
    if image_shape is None or table.label is None:
        label = st.selectbox("Label column (the classes to predict)", columns, index=label_default, key="adv:label")
    else:
        label = table.label
    if image_shape is None:
        options = ui_data.numeric_columns(table)
        features = st.multiselect(
            "Feature columns", options, default=[c for c in table.columns_with_role("feature") if c in options],
            key="adv:features", help=f"Numeric columns the classifier reads (at most {wf.MAX_FEATURES:,}); the "
                                     "attack changes them.")
    else:
        features = feature_roles
    network = None
    if source == "train":
        networks = [k for k in wf.NETWORKS if image_shape is not None or wf.NETWORKS[k][1]["kind"] != "cnn"]
        network = st.selectbox("Classifier network", networks, format_func=lambda k: wf.NETWORKS[k][0],
                               key="adv:network", help=HELP["network"])
    with st.expander("Training and split settings" if source == "train" else "Split settings"):
        if source == "train":
            clf_controls = training.controls("adv:clf", epochs=30, batch_size=64)
            split_seed = clf_controls.seed
        else:
            clf_controls = None
            split_seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="adv:own_seed", help="Same seed, same split.")
        cols = st.columns(2)
        max_train = cols[0].number_input("Train on at most this many rows", 100, SETTINGS.max_train_rows,
                                         min(20_000, SETTINGS.max_train_rows), step=1000, key="adv:max_train",
                                         help=f"A random sample beyond that (at most {SETTINGS.max_train_rows:,}).")
        test_share = cols[1].slider("Test share", 0.1, 0.5, 0.25, 0.05, key="adv:test_share",
                                    help="Rows kept out of training, stratified by class: they are attacked. A fifth "
                                         "of the remaining rows is also held out to set the detector's threshold.")
    train_clicked = st.form_submit_button("Train classifier" if source == "train" else "Use this model",
                                          type="primary", icon=":material/model_training:", key="adv:train",
                                          disabled=source == "own" and own is None)

if train_clicked:
    try:
        if own is not None:
            features = own_model.input_columns(own.predictor.feature_names, own.predictor.n_features, features,
                                               columns, label)
        prepared = wf.prepare(table.frame, features, label, image_shape, float(test_share), int(max_train),
                              int(split_seed), table_name=table.name)
        class_map = None
        if own is not None:
            prepared, class_map = wf.for_own_model(prepared, own)
    except DataError as exc:
        ui_data.show_data_error(exc)
    except ModelError as exc:
        st.error(f"**{own.file_name}** does not fit these columns: {exc}", icon=":material/error:")
    else:
        start_classifier(prepared, network, clf_controls, own, class_map)

training.panel(CLASSIFIER_JOB)
clf_run: wf.ClassifierRun | None = training.outcome(CLASSIFIER_JOB, wf.view_classifier)

if clf_run is not None:
    data = clf_run.data
    cols = st.columns(5)
    cols[0].metric("Test accuracy", "n/a" if clf_run.test_accuracy is None else f"{clf_run.test_accuracy:.3f}",
                   help=f"Share of the {len(data.X_test):,} test rows the classifier gets right.")
    cols[1].metric("Training accuracy", "n/a" if clf_run.train_accuracy is None else f"{clf_run.train_accuracy:.3f}")
    cols[2].metric("Training rows", f"{len(data.X_fit):,}")
    cols[3].metric("Held-out clean rows", f"{len(data.X_calibration):,}",
                   help="Seen by neither model; the threshold is a percentile of their scores.")
    cols[4].metric("Test rows", f"{len(data.X_test):,}")
    if clf_run.class_map is not None and clf_run.class_map.message():
        st.warning(clf_run.class_map.message(), icon=":material/warning:")
    st.caption(f"{clf_run.network} on {data.table_name}: {len(data.feature_names):,} features scaled to [0, 1] "
               + ("for the attack (your model gets them back in the table's units) " if clf_run.own else "")
               + f"({'one range for all pixels' if data.image_shape else 'per feature'}, from the training rows), "
               f"{len(data.class_names)} classes, split by {data.split}. "
               + " ".join(note[:1].upper() + note[1:] for note in data.notes))
    hints.convergence(hints.history_loss(clf_run.history), model="classifier")

st.subheader("2 · Distil a detector")
if clf_run is None:
    st.info("Train the classifier first (step 1): the detector is distilled from it.")
else:
    with st.form("adv:distil-form", border=False):
        cols = st.columns(2)
        temperature = cols[0].slider("Temperature", 1.0, 10.0, 2.0, 0.5, key="adv:temperature",
                                     help=HELP["temperature"])
        loss_type = cols[1].radio("Score and loss", list(wf.LOSSES), format_func=wf.LOSSES.get, horizontal=True,
                                  key="adv:loss", help=HELP["loss"])
        distil_controls = training.controls("adv:distil", epochs=25, batch_size=128)
        st.caption("The distilled model is a wide MLP (512-512). " + HELP["distil_epochs"]
                   + (" It learns your model's probabilities on the training rows: your model is only called, "
                      "never changed." if clf_run.own else ""))
        distil_clicked = st.form_submit_button("Distil detector", type="primary", icon=":material/model_training:",
                                               key="adv:distil")
    if distil_clicked:
        request = wf.distil_request(clf_run, float(temperature), loss_type, fit_settings(distil_controls),
                                    trusted=SETTINGS.trusted_mode, max_mb=SETTINGS.max_model_mb)
        if training.start_job(DISTIL_JOB, "Distil detector", jobs.adversarial.distil, request,
                              context=(clf_run, float(temperature), loss_type)) is not None:
            training.forget(ATTACK_JOB)  # the attack's scores came from the previous detector

training.panel(DISTIL_JOB)
det_run: wf.DetectorRun | None = training.outcome(DISTIL_JOB, wf.detector_view)
if det_run is not None and det_run.classifier_run is not clf_run:
    det_run = None
if det_run is not None:
    cols = st.columns(3)
    cols[0].metric("Agreement on held-out clean rows", f"{det_run.agreement:.1%}",
                   help="Share of clean rows neither model saw where the distilled model predicts the classifier's "
                        "class; high agreement keeps false alarms low.")
    cols[1].metric("Temperature", f"{det_run.temperature:g}")
    cols[2].metric("Distillation epochs", f"{det_run.epochs_run}")
    hints.convergence(hints.history_loss(det_run.history), model="distilled")

st.subheader("3 · Attack the test rows")
if det_run is None:
    if clf_run is not None:
        st.info("Distil the detector first (step 2), then attack the classifier and see whether it is caught.")
else:
    n_test = len(det_run.classifier_run.data.X_test)
    if det_run.classifier_run.transfer_attack:
        st.info("**Transfer attack**: your model is a black box (no gradients), so FGSM and PGD are made against the "
                "distilled model; the attacked rows are then given to your model and to the detector. Harmful rate "
                "and accuracy are your model's on those rows.", icon=":material/swap_horiz:")
    elif det_run.classifier_run.own is not None:
        st.info("**White box**: your Keras model gives gradients, so the attack aims at it directly.",
                icon=":material/functions:")
    with st.form("adv:attack-form", border=False):
        cols = st.columns(3)
        method = cols[0].radio("Attack", list(wf.METHODS), horizontal=True, key="adv:method",
                               format_func=wf.METHODS.get, help=HELP["method"])
        norm = cols[1].radio("Norm", list(wf.NORMS), format_func=wf.NORMS.get, key="adv:norm", help=HELP["norm"])
        epsilon = cols[2].slider("ε (share of the data range)", 0.01, 0.5, 0.15, 0.01, key="adv:epsilon",
                                 help=HELP["epsilon"])
        cols = st.columns(3)
        steps = cols[0].number_input("PGD steps", 1, SETTINGS.max_iterations, min(20, SETTINGS.max_iterations),
                                     key="adv:steps", help=HELP["steps"] + f" At most {SETTINGS.max_iterations:,}.")
        most_rows = min(n_test, wf.MAX_ATTACK_ROWS)
        n_rows = cols[1].number_input(f"Test rows to attack (at most {most_rows:,})", 1, most_rows,
                                      min(1000, most_rows), key="adv:rows", help=HELP["rows"])
        attack_seed = cols[2].number_input("Seed", 0, 2**31 - 1, 0, key="adv:attack_seed", help=HELP["attack_seed"])
        attack_clicked = st.form_submit_button("Attack and score", type="primary", icon=":material/bolt:",
                                               key="adv:attack")
    if attack_clicked:
        positions = wf.attack_positions(n_test, int(n_rows), int(attack_seed))
        description = wf.describe_attack(method, norm, float(epsilon), int(steps),
                                         det_run.classifier_run.transfer_attack)
        request = wf.attack_request(det_run, positions, method, norm, float(epsilon), int(steps), int(attack_seed),
                                    trusted=SETTINGS.trusted_mode, max_mb=SETTINGS.max_model_mb)
        training.start_job(ATTACK_JOB, "Attack and score", jobs.adversarial.attack, request, kind="attack",
                           context=(det_run, positions, description))

training.panel(ATTACK_JOB, show_loss=False)
attack_run: wf.AttackRun | None = training.outcome(ATTACK_JOB, wf.attack_view)
if attack_run is not None and det_run is not None and attack_run.detector_run is det_run:
    results(attack_run)
elif clf_run is None and training.current(CLASSIFIER_JOB) is None:
    st.info("Press **Train classifier** to start. Bundled Digits (8 × 8 handwritten digits) trains in seconds; "
            "MNIST and Breast cancer work too, as does your own labelled table from the Data page.")
