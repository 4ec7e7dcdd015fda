"""Adversarial detection: train a classifier, distil a detector from it, attack the test rows, measure detection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine.ad.attacks import AttackResult
from engine.datasets import get_dataset
from engine.errors import DataError, ModelError
from engine.metrics import ScoreCurves, score_curves
from engine.tabular import classification_data
from engine.training import TrainingHistory
from ui import charts, downloads, images, own_model, training
from ui import data as ui_data
from ui.settings import SETTINGS
from ui.tasks import ArchivedDetector, TrainedNetwork

CLASSIFIER_JOB = "adv-classifier"
DISTIL_JOB = "adv-distil"
ATTACK_JOB = "adv-attack"
DEFAULT_DATASET = "bundled:digits"
CALIBRATION_SHARE = 0.2  # of the training rows, held out from both models to set the threshold
MAX_FEATURES = 1_000
MAX_ATTACK_ROWS = 10_000
ATTACK_CHUNK_ROWS = 1_000  # rows per attack call: progress and cancellation between chunks
NETWORKS = {
    "mlp-small": ("MLP 128-64", dict(kind="mlp", hidden=(128, 64))),
    "mlp-large": ("MLP 256-128", dict(kind="mlp", hidden=(256, 128))),
    "cnn": ("small CNN (images only)", dict(kind="cnn", hidden=(64,))),
}
LOSSES = {"kld": "KL divergence (kld)", "xent": "cross-entropy (xent)"}
NORMS = {"inf": "L∞ (every feature moves at most ε)", "2": "L2 (total change at most ε·√d)"}


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Prepared:
    """The chosen table as the models see it: features mapped to [0, 1], split three ways."""

    table_name: str
    feature_names: list[str]
    class_names: list[str]
    image_shape: tuple[int, ...] | None
    X_fit: np.ndarray  # the classifier and the detector train on these
    y_fit: np.ndarray
    X_calibration: np.ndarray  # clean rows neither model saw: the threshold percentile refers to them
    X_test: np.ndarray  # attacked and scored
    y_test: np.ndarray
    test_rows: np.ndarray  # positions of the test rows in the table
    low: np.ndarray  # scaled = (raw - low) / span
    span: np.ndarray
    split: str
    notes: list[str] = field(default_factory=list)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Scaled rows back in the table's units."""
        return X * self.span + self.low


def unit_range(X_train: np.ndarray, image: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(low, span)`` that map the training rows onto [0, 1]: one range for all pixels, else one per feature."""
    if image:
        low, high = np.full(X_train.shape[1], X_train.min()), np.full(X_train.shape[1], X_train.max())
    else:
        low, high = X_train.min(axis=0), X_train.max(axis=0)
    return low.astype(np.float64), np.where(high > low, high - low, 1.0).astype(np.float64)


def prepare(table, features, label, image_shape, test_share, max_train, seed) -> Prepared:
    data = classification_data(table.frame, features, label, test_size=test_share, seed=seed,
                               max_train_rows=max_train)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.X_train))
    n_calibration = max(1, int(round(CALIBRATION_SHARE * len(order))))
    if len(order) - n_calibration < 10:
        raise DataError(f"only {len(order)} training rows: at least 13 are needed (a fifth is held out to set the "
                        "threshold). Use more rows or a smaller test share.")
    fit, calibration = np.sort(order[n_calibration:]), np.sort(order[:n_calibration])
    low, span = unit_range(data.X_train[fit], image_shape is not None)

    def scale(X):
        return ((X - low) / span).astype(np.float32)

    return Prepared(
        table_name=table.name, feature_names=list(data.feature_names), class_names=list(data.class_names),
        image_shape=image_shape, X_fit=scale(data.X_train[fit]), y_fit=data.y_train[fit],
        X_calibration=scale(data.X_train[calibration]), X_test=scale(data.X_test), y_test=data.y_test,
        test_rows=data.test_rows, low=low, span=span, split=data.split, notes=list(data.notes),
    )


# ------------------------------------------------------------------------------------------------ jobs


@dataclass
class ClassifierRun:
    data: Prepared
    classifier: TrainedNetwork | None  # the keras classifier trained here, as its spec and weights
    network: str
    history: TrainingHistory | None
    train_accuracy: float
    test_accuracy: float
    own: own_model.OwnModel | None = None  # an uploaded model, used instead of one trained here
    class_map: own_model.ClassMap | None = None

    @property
    def transfer_attack(self) -> bool:
        """An uploaded black-box model has no gradients: the attack is made against the distilled model."""
        return self.own is not None and not self.own.white_box


@dataclass
class DetectorRun:
    classifier_run: ClassifierRun
    model: ArchivedDetector | None  # the distilled ModelDistillation, as the worker sent it back (None: own model)
    temperature: float
    epochs_run: int
    calibration_scores: np.ndarray
    agreement: float  # share of held-out clean rows where student and classifier predict the same class
    threshold: float | None = None  # the slider's threshold on the last run; the detector download carries it
    student: TrainedNetwork | None = None  # distilled from an uploaded model: the student alone (no archive)
    student_info: dict | None = None  # its output kinds and classes, as the distil task reported them


@dataclass
class AttackRun:
    detector_run: DetectorRun
    result: AttackResult
    positions: np.ndarray  # in the test split
    scores_clean: np.ndarray
    scores_adv: np.ndarray
    student_clean: np.ndarray  # the distilled model's class probabilities
    student_adv: np.ndarray
    curves: ScoreCurves | None
    harmful_auc: float | None
    description: str
    notes: list[str] = field(default_factory=list)


def train_classifier_job(data: Prepared, network: str, controls) -> None:
    """Start step 1: the classifier trains in a worker (``classifier.train``)."""
    def finish(values: dict, out: dict) -> ClassifierRun:
        history = TrainingHistory(**values["history"])
        metrics = values["metrics"]
        return ClassifierRun(data, TrainedNetwork.from_answer(values["spec"], out), NETWORKS[network][0], history,
                             metrics["train_accuracy"], metrics["val_accuracy"])

    params = {**controls.params(), "network": NETWORKS[network][1], "n_features": len(data.feature_names),
              "n_classes": len(data.class_names), "image_shape": data.image_shape, "show_accuracy": True}
    arrays = {"X": data.X_fit, "y": data.y_fit, "X_val": data.X_test, "y_val": data.y_test}
    if training.start_task(CLASSIFIER_JOB, f"Train classifier on {data.table_name}", "classifier.train", params,
                           arrays, finish) is not None:
        training.forget(DISTIL_JOB)  # a detector and an attack belong to the classifier they were made for
        training.forget(ATTACK_JOB)


def for_own_model(data: Prepared, model: own_model.OwnModel) -> tuple[Prepared, own_model.ClassMap]:
    """The prepared data with the model's classes (``class_names`` its outputs, labels its columns).

    Accuracies and harmfulness need every label value to be a class of the model: a clear error otherwise.
    """
    model.predictor.check(data.raw(data.X_fit))
    class_map = own_model.ClassMap.between(model.class_names, data.class_names)
    if class_map.unmatched:
        raise ModelError(f"{class_map.message()} Adversarial detection measures the model against the label: "
                         "choose the label column the model was trained to predict.")
    data.class_names = class_map.shown_names
    data.y_fit = class_map.labels_for_model(data.y_fit)
    data.y_test = class_map.labels_for_model(data.y_test)
    return data, class_map


def use_own_model_job(data: Prepared, model: own_model.OwnModel, class_map: own_model.ClassMap) -> None:
    """Start step 1 with an uploaded model: its accuracy on the training and test rows (in a job thread)."""
    def use(job) -> ClassifierRun:
        job.set_stage("predicting the rows with your model", 0.0)
        train_proba = own_model.predict_in_batches(model.predictor, data.raw(data.X_fit))
        test_proba = own_model.predict_in_batches(model.predictor, data.raw(data.X_test))
        train_accuracy = own_model.accuracy(train_proba, data.y_fit)
        test_accuracy = own_model.accuracy(test_proba, data.y_test)
        job.set_stage(f"your model is ready, test accuracy {test_accuracy:.3f}", 1.0)
        return ClassifierRun(data, None, own_model.describe(model), None, train_accuracy, test_accuracy, own=model,
                             class_map=class_map)

    if training.start(CLASSIFIER_JOB, f"Use {model.file_name} on {data.table_name}", use) is not None:
        training.forget(DISTIL_JOB)
        training.forget(ATTACK_JOB)


def own_model_task_inputs(run: ClassifierRun) -> tuple[dict, dict]:
    """How a task gets the uploaded model: its file's bytes (reloaded there, in a thread or a worker) and the
    unit change from the page's [0, 1] scale back to the table's values."""
    model, data = run.own, run.data
    params = {"own": {"kind": model.kind, "trusted": SETTINGS.trusted_mode, "max_mb": SETTINGS.max_model_mb,
                      "white_box": model.white_box}}
    return params, {"model": model.as_array(), "low": data.low, "span": data.span}


def distil_job(run: ClassifierRun, temperature: float, loss_type: str, controls) -> None:
    """Start step 2: the detector is distilled in a worker (``adversarial.distil``)."""
    data = run.data

    def finish(values: dict, out: dict) -> DetectorRun:
        if run.own is not None:
            return DetectorRun(run, None, temperature, values["history"]["epochs_run"], out["scores"],
                               values["agreement"], student=TrainedNetwork.from_answer(
                                   values["student"]["spec"], out, prefix="student"), student_info=values["student"])
        return DetectorRun(run, ArchivedDetector(out["archive"].tobytes()), temperature,
                           values["history"]["epochs_run"], out["scores"], values["agreement"])

    params = {**controls.params(), "temperature": temperature, "loss_type": loss_type,
              "data_type": "image" if data.image_shape else "tabular"}
    arrays = {"X_fit": data.X_fit, "X_calibration": data.X_calibration}
    if run.own is not None:
        own_params, own_arrays = own_model_task_inputs(run)
        params.update(own_params)
        arrays.update(own_arrays)
    else:
        params["teacher"] = run.classifier.spec
        arrays.update(run.classifier.arrays())
    if training.start_task(DISTIL_JOB, "Distil detector", "adversarial.distil", params, arrays, finish) is not None:
        training.forget(ATTACK_JOB)  # the attack's scores came from the previous detector


def attack_job(run: DetectorRun, method: str, norm: str, epsilon_relative: float, steps: int, n_rows: int,
               seed: int) -> None:
    """Start step 3: a random sample of the test rows is attacked and scored in a worker (``adversarial.attack``)."""
    data = run.classifier_run.data
    rng = np.random.default_rng(seed)
    n_test = len(data.X_test)
    positions = np.arange(n_test) if n_rows >= n_test else np.sort(rng.choice(n_test, n_rows, replace=False))

    def finish(values: dict, out: dict) -> AttackRun:
        result = AttackResult(**{k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("result/")},
                              params=values["params"])
        n = len(result.harmful)
        scores_clean, scores_adv = out["scores_clean"], out["scores_adv"]
        curves = score_curves(np.r_[np.zeros(n), np.ones(n)], np.r_[scores_clean, scores_adv])
        harmful = result.harmful
        harmful_curves = score_curves(np.r_[np.zeros(n), np.ones(int(harmful.sum()))],
                                      np.r_[scores_clean, scores_adv[harmful]]) if harmful.any() else None
        name = {"fgsm": "FGSM", "pgd": f"PGD ({steps} steps)"}[method]
        description = f"{name}, {'L∞' if norm == 'inf' else 'L2'} ε = {epsilon_relative:g} of the data range"
        if run.classifier_run.transfer_attack:
            description += ", made against the distilled model (transfer attack)"
        return AttackRun(run, result, positions[:n], scores_clean, scores_adv, out["student_clean"],
                         out["student_adv"], curves, None if harmful_curves is None else harmful_curves.roc_auc,
                         description, values["notes"])

    params = {"method": method, "norm": norm, "epsilon_relative": epsilon_relative, "steps": steps, "seed": seed,
              "chunk_rows": ATTACK_CHUNK_ROWS}
    arrays = {"X": data.X_test[positions], "y": data.y_test[positions]}
    if run.classifier_run.own is not None:
        own_params, own_arrays = own_model_task_inputs(run.classifier_run)
        params.update(own_params, student=run.student_info, temperature=run.temperature,
                      loss_type=run.student_info["loss_type"])
        arrays.update(own_arrays, **run.student.arrays())
    else:
        arrays["archive"] = np.frombuffer(run.model.archive, dtype=np.uint8)
    training.start_task(ATTACK_JOB, "Attack and score", "adversarial.attack", params, arrays, finish, kind="attack")


# ------------------------------------------------------------------------------------------------ figures


def score_histograms(clean: np.ndarray, adversarial: np.ndarray, threshold: float, log_scale: bool) -> go.Figure:
    """Overlaid histograms of clean and adversarial scores with the threshold line."""
    def axis(values):
        values = np.asarray(values, dtype=float)
        return np.log10(np.maximum(values, floor)) if log_scale else values

    positive = np.r_[clean, adversarial][np.r_[clean, adversarial] > 0]
    floor = float(positive.min()) if len(positive) else 1e-12
    both = axis(np.r_[clean, adversarial])
    edges = np.histogram_bin_edges(both, bins=60)
    fig = go.Figure()
    for name, values, color in (("clean", clean, charts.INLIER), ("adversarial", adversarial, charts.OUTLIER)):
        counts, _ = np.histogram(axis(values), bins=edges)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=f"{name} inputs",
                             marker_color=color, opacity=0.6))
    charts.threshold_line(fig, float(axis([threshold])[0]), axis="x")
    title = "adversarial score"
    if log_scale:
        low, high = math.floor(both.min()), math.ceil(both.max())
        ticks = list(range(low, high + 1))
        fig.update_xaxes(tickvals=ticks, ticktext=[f"1e{t}" for t in ticks])
        title += " (log scale)"
    fig.update_layout(title="Scores of clean and attacked test rows", barmode="overlay", xaxis_title=title,
                      yaxis_title="rows", margin=dict(l=10, r=10, t=40, b=10), height=340,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def roc_with_point(curves: ScoreCurves, fpr: float, tpr: float) -> go.Figure:
    fig = charts.roc_figure(curves.fpr, curves.tpr, curves.roc_auc, title="ROC: clean vs adversarial")
    fig.add_trace(go.Scatter(x=[fpr], y=[tpr], mode="markers", name="at the threshold",
                             marker=dict(size=11, color=charts.OUTLIER, symbol="x")))
    return fig


def predictions_table(run: AttackRun, i: int, flagged_clean: bool, flagged_adv: bool) -> pd.DataFrame:
    names = run.detector_run.classifier_run.data.class_names
    result = run.result

    def cls(proba):
        return f"{names[int(np.argmax(proba))]} ({float(np.max(proba)):.2f})"

    return pd.DataFrame({
        "input": ["original", "adversarial"],
        "classifier predicts (probability)": [cls(result.proba_clean[i]), cls(result.proba_adv[i])],
        f"distilled model predicts (probability at T={run.detector_run.temperature:g})": [cls(run.student_clean[i]), cls(run.student_adv[i])],
        "adversarial score": [f"{run.scores_clean[i]:.4g}", f"{run.scores_adv[i]:.4g}"],
        "flagged": ["yes" if flagged_clean else "no", "yes" if flagged_adv else "no"],
    })


# ------------------------------------------------------------------------------------------------ results


@st.fragment
def results(run: AttackRun) -> None:
    det_run = run.detector_run
    data = det_run.classifier_run.data
    result = run.result
    n = len(run.positions)
    st.header("Results")
    st.caption(f"{run.description} · {n:,} test rows of {data.table_name} · mean change L∞ "
               f"{np.mean(result.linf):.3g}, L2 {np.mean(result.l2):.3g} (in [0, 1]-scaled units)")
    for note in run.notes:
        st.warning(note[:1].upper() + note[1:], icon=":material/timer:")

    cols = st.columns(4)
    cols[0].metric("Classifier accuracy, clean", f"{result.accuracy_clean:.3f}",
                   help="On the original test rows.")
    cols[1].metric("Classifier accuracy, attacked", f"{result.accuracy_adv:.3f}",
                   delta=f"{result.accuracy_adv - result.accuracy_clean:+.3f}",
                   help="On the same rows after the attack.")
    cols[2].metric("Harmful rate", f"{result.harmful_rate:.1%}",
                   help="Share of attacked rows whose predicted class the attack changed.")
    cols[3].metric("Detection ROC-AUC", "n/a" if run.curves is None else f"{run.curves.roc_auc:.3f}",
                   help="How well the score separates clean from attacked rows (1 = perfectly, 0.5 = chance)"
                        + ("" if run.harmful_auc is None else
                           f"; {run.harmful_auc:.3f} against the harmful attacked rows only."))

    percentile = st.slider(
        "Threshold percentile of held-out clean scores", 50.0, 99.9, 95.0, 0.1, key="adv:percentile",
        help=f"The threshold is this percentile of the scores of {len(det_run.calibration_scores):,} clean "
             "training rows that neither model saw: at 95, about 5 % of clean inputs are flagged.")
    threshold = float(np.percentile(det_run.calibration_scores, percentile))
    det_run.threshold = threshold
    flag_clean, flag_adv = run.scores_clean > threshold, run.scores_adv > threshold
    harmful = result.harmful
    detection, false_alarms = float(np.mean(flag_adv)), float(np.mean(flag_clean))
    cols = st.columns(4)
    cols[0].metric("Detection rate", f"{detection:.1%}", help="Share of attacked rows flagged as adversarial.")
    cols[1].metric("Detection rate, harmful only", f"{np.mean(flag_adv[harmful]):.1%}" if harmful.any() else "n/a",
                   help="Share of the attacked rows whose prediction changed that are flagged.")
    cols[2].metric("False-alarm rate", f"{false_alarms:.1%}", help="Share of clean test rows flagged.")
    cols[3].metric("Threshold (score)", f"{threshold:.4g}")

    left, right = st.columns(2)
    with left:
        log_scale = st.toggle("Log-scale scores", value=True, key="adv:log",
                              help="Clean scores sit near 0; a log scale shows both groups.")
        st.plotly_chart(score_histograms(run.scores_clean, run.scores_adv, threshold, log_scale), key="adv:hist")
    with right:
        if run.curves is not None:
            st.plotly_chart(roc_with_point(run.curves, false_alarms, detection), key="adv:roc")
        else:
            st.info("The ROC curve needs both clean and attacked rows.")

    st.subheader("One test row, before and after the attack")
    filters = {
        "all": ("all attacked rows", np.ones(n, bool)),
        "harmful": ("prediction changed", harmful),
        "missed": ("prediction changed, not flagged", harmful & ~flag_adv),
        "caught": ("flagged", flag_adv),
    }
    which = st.radio("Show", list(filters), format_func=lambda k: f"{filters[k][0]} ({int(filters[k][1].sum()):,})",
                     index=1 if harmful.any() else 0, horizontal=True, key="adv:filter")
    candidates = np.flatnonzero(filters[which][1])
    if len(candidates) == 0:
        st.info("No test row in this group at the current threshold.")
    else:
        names = data.class_names

        def label(i):
            change = f"classifier {names[result.pred_clean[i]]} → {names[result.pred_adv[i]]}"
            return (f"test row {run.positions[i]} · true {names[result.y[i]]} · {change} · "
                    f"score {run.scores_adv[i]:.3g}{' · flagged' if flag_adv[i] else ''}")

        i = int(st.selectbox("Test row", candidates[:500], format_func=label, key="adv:instance",
                             help="The first 500 rows of the group."))
        table_row = int(data.test_rows[run.positions[i]])
        if data.image_shape is not None:
            delta = result.X_adv[i] - result.X_clean[i]
            st.plotly_chart(images.image_grid(
                [result.X_clean[i], result.X_adv[i], delta],
                [f"original: {names[result.pred_clean[i]]}", f"adversarial: {names[result.pred_adv[i]]}",
                 "perturbation (adversarial − original)"],
                data.image_shape, diverging=[False, False, True], value_range=(0.0, 1.0)), key="adv:images")
        else:
            raw_clean, raw_adv = data.raw(result.X_clean[i]), data.raw(result.X_adv[i])
            st.plotly_chart(charts.bar_figure(data.feature_names, raw_adv - raw_clean,
                                              f"Per-feature change of test row {run.positions[i]}",
                                              "adversarial − original (table units)"), key="adv:changes")
            with st.expander("Feature values"):
                st.dataframe(pd.DataFrame({"feature": data.feature_names, "original": raw_clean,
                                           "adversarial": raw_adv, "change": raw_adv - raw_clean}),
                             hide_index=True, key="adv:values")
        st.dataframe(predictions_table(run, i, bool(flag_clean[i]), bool(flag_adv[i])), hide_index=True,
                     key="adv:predictions")
        made_against = ("the distilled model (your model gives no gradients), then given to your model: a transfer "
                        "attack" if det_run.classifier_run.transfer_attack else "the classifier only")
        st.caption(f"Table row {table_row}, true class {names[result.y[i]]}. The attack was made against "
                   f"{made_against}; the detector flags the input when the distilled model disagrees with the "
                   "classifier. The distilled model learns the classifier's probabilities softened by the temperature, "
                   "so its own probabilities are lower.")

    st.subheader("Export")
    left, right = st.columns(2)
    with left:
        downloads.csv_button("Scores CSV", lambda: scores_frame(run, flag_clean, flag_adv), "adversarial_scores.csv",
                             key="adv:csv")
    if det_run.model is None:
        st.caption("No detector archive for an uploaded model: Lantern's archive rebuilds the classifier from its own "
                   "format, and your model is not in it. The scores CSV holds every score and prediction.")
        return
    with right:
        downloads.archive_button("Detector archive", lambda: det_run.model.to_bytes(threshold=threshold),
                                 "model_distillation.lantern.zip", key="adv:archive")
    st.caption("The archive holds the classifier, the distilled model and the threshold; both take rows scaled "
               "to [0, 1] as on this page.")


def scores_frame(run: AttackRun, flag_clean: np.ndarray, flag_adv: np.ndarray) -> pd.DataFrame:
    data, result = run.detector_run.classifier_run.data, run.result
    names = np.asarray(data.class_names, dtype=object)

    def rows(kind, scores, proba, student, flags, harmful):
        return pd.DataFrame({
            "table_row": data.test_rows[run.positions], "test_row": run.positions, "input": kind,
            "is_adversarial": int(kind == "adversarial"), "instance_score": scores, "flagged": flags.astype(int),
            "true_class": names[result.y], "classifier_prediction": names[proba.argmax(axis=1)],
            "classifier_probability": proba.max(axis=1), "distilled_prediction": names[student.argmax(axis=1)],
            "distilled_probability": student.max(axis=1), "prediction_changed": harmful,
        })

    return pd.concat([
        rows("clean", run.scores_clean, result.proba_clean, run.student_clean, flag_clean,
             np.zeros(len(run.positions), dtype=int)),
        rows("adversarial", run.scores_adv, result.proba_adv, run.student_adv, flag_adv, result.harmful.astype(int)),
    ], ignore_index=True)


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
            key="adv:features", help=f"Numeric columns the classifier reads (at most {MAX_FEATURES:,}); the attack "
                                     "changes them.")
    else:
        features = feature_roles
    network = None
    if source == "train":
        networks = [k for k in NETWORKS if image_shape is not None or NETWORKS[k][1]["kind"] != "cnn"]
        network = st.selectbox("Classifier network", networks, format_func=lambda k: NETWORKS[k][0],
                               key="adv:network",
                               help="The model to attack and protect; MLP 128-64 suits small data, a CNN suits images.")
    with st.expander("Training and split settings" if source == "train" else "Split settings"):
        if source == "train":
            clf_controls = training.controls("adv:clf", epochs=30, batch_size=64)
            split_seed = clf_controls.seed
        else:
            split_seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="adv:own_seed",
                                         help="Same seed, same split.")
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
    features = [c for c in features if c != label]
    try:
        if own is not None:
            features = own_model.input_columns(own.predictor.feature_names, own.predictor.n_features, features,
                                               columns, label)
        if not features:
            raise DataError("no feature columns are selected; pick at least one numeric column.")
        if len(features) > MAX_FEATURES:
            raise DataError(f"{len(features):,} feature columns are selected; at most {MAX_FEATURES:,} are allowed.")
        prepared = prepare(table, features, label, image_shape, float(test_share), int(max_train), int(split_seed))
        if own is not None:
            prepared, class_map = for_own_model(prepared, own)
    except DataError as exc:
        ui_data.show_data_error(exc)
    except ModelError as exc:
        st.error(f"**{own.file_name}** does not fit these columns: {exc}", icon=":material/error:")
    else:
        if own is not None:
            use_own_model_job(prepared, own, class_map)
        else:
            train_classifier_job(prepared, network, clf_controls)

training.panel(CLASSIFIER_JOB)
clf_run: ClassifierRun | None = training.result(CLASSIFIER_JOB)

if clf_run is not None:
    data = clf_run.data
    cols = st.columns(5)
    cols[0].metric("Test accuracy", f"{clf_run.test_accuracy:.3f}",
                   help=f"Share of the {len(data.X_test):,} test rows the classifier gets right.")
    cols[1].metric("Training accuracy", f"{clf_run.train_accuracy:.3f}")
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

st.subheader("2 · Distil a detector")
if clf_run is None:
    st.info("Train the classifier first (step 1): the detector is distilled from it.")
else:
    with st.form("adv:distil-form", border=False):
        cols = st.columns(2)
        temperature = cols[0].slider(
            "Temperature", 1.0, 10.0, 2.0, 0.5, key="adv:temperature",
            help="Softens the classifier's probabilities the distilled model learns from. 2 has the best mean "
                 "ROC-AUC over MLP and CNN classifiers and weak to strong attacks on digits; 5-10 catch strong "
                 "attacks on an MLP better but weak ones and CNN attacks worse; 1 suits weak attacks.")
        loss_type = cols[1].radio("Score and loss", list(LOSSES), format_func=LOSSES.get, horizontal=True,
                                  key="adv:loss",
                                  help="kld is the better detector; xent adds the classifier's entropy, which "
                                       "attacks lower.")
        distil_controls = training.controls("adv:distil", epochs=25, batch_size=128)
        st.caption("The distilled model is a wide MLP (512-512). More epochs help: 50 gives the best detection in "
                   "the benchmarks; 25 is a quick start."
                   + (" It learns your model's probabilities on the training rows: your model is only called, "
                      "never changed." if clf_run.own else ""))
        distil_clicked = st.form_submit_button("Distil detector", type="primary", icon=":material/model_training:",
                                               key="adv:distil")
    if distil_clicked:
        distil_job(clf_run, float(temperature), loss_type, distil_controls)

training.panel(DISTIL_JOB)
det_run: DetectorRun | None = training.result(DISTIL_JOB)
if det_run is not None and det_run.classifier_run is not clf_run:
    det_run = None
if det_run is not None:
    cols = st.columns(3)
    cols[0].metric("Agreement on held-out clean rows", f"{det_run.agreement:.1%}",
                   help="Share of clean rows neither model saw where the distilled model predicts the classifier's "
                        "class; high agreement keeps false alarms low.")
    cols[1].metric("Temperature", f"{det_run.temperature:g}")
    cols[2].metric("Distillation epochs", f"{det_run.epochs_run}")

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
        method = cols[0].radio("Attack", ["pgd", "fgsm"], horizontal=True, key="adv:method",
                               format_func={"pgd": "PGD", "fgsm": "FGSM"}.get,
                               help="FGSM: one gradient step. PGD: several smaller steps, each projected back "
                                    "into the ε-ball; stronger.")
        norm = cols[1].radio("Norm", list(NORMS), format_func=NORMS.get, key="adv:norm")
        epsilon = cols[2].slider("ε (share of the data range)", 0.01, 0.5, 0.15, 0.01, key="adv:epsilon",
                                 help="Features are scaled to [0, 1]: at 0.15 (L∞) each one moves by at most 15 % of "
                                      "its range; L2 allows a root-mean-square change of 15 % per feature. Weaker "
                                      "attacks change fewer predictions and are harder to detect.")
        cols = st.columns(3)
        steps = cols[0].number_input("PGD steps", 1, SETTINGS.max_iterations, min(20, SETTINGS.max_iterations),
                                     key="adv:steps", help=f"Ignored by FGSM. At most {SETTINGS.max_iterations:,}.")
        most_rows = min(n_test, MAX_ATTACK_ROWS)
        n_rows = cols[1].number_input(f"Test rows to attack (at most {most_rows:,})", 1, most_rows,
                                      min(1000, most_rows), key="adv:rows",
                                      help="A random sample of the test split when fewer than all.")
        attack_seed = cols[2].number_input("Seed", 0, 2**31 - 1, 0, key="adv:attack_seed",
                                           help="Row sample and PGD's random start.")
        attack_clicked = st.form_submit_button("Attack and score", type="primary", icon=":material/bolt:",
                                               key="adv:attack")
    if attack_clicked:
        attack_job(det_run, method, norm, float(epsilon), int(steps), int(n_rows), int(attack_seed))

training.panel(ATTACK_JOB, show_loss=False)
attack_run: AttackRun | None = training.result(ATTACK_JOB)
if attack_run is not None and det_run is not None and attack_run.detector_run is det_run:
    results(attack_run)
elif clf_run is None and training.current(CLASSIFIER_JOB) is None:
    st.info("Press **Train classifier** to start. Bundled Digits (8 × 8 handwritten digits) trains in seconds; "
            "MNIST and Breast cancer work too, as does your own labelled table from the Data page.")
