"""Contrastive explanations: train a classifier, then find what one prediction needs absent (PN) and present (PP)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine.datasets import get_dataset
from engine.errors import DataError, ModelError
from engine.explainers import CEM
from engine.explanation import Explanation
from engine.preprocessing import Standardizer
from engine.tabular import classification_data, find_split_column
from engine.training import TrainingHistory
from ui import charts, downloads, images, own_model, training
from ui import data as ui_data
from ui.settings import SETTINGS
from ui.tasks import TrainedNetwork, teacher_network

MODEL_JOB = "cem-model"
AE_JOB = "cem-ae"
EXPLAIN_JOB = "cem-explain"
DEFAULT_DATASET = "bundled:iris"
MAX_FEATURES = 1_000
MAX_C_STEPS = 10
MIN_TRAIN_ROWS = 10
MODES = {"PN": "Pertinent negative (PN)", "PP": "Pertinent positive (PP)"}
TABULAR_NETWORKS = {
    "softmax": ("softmax regression (one dense layer, as in the CEM paper's iris example)", dict(hidden=())),
    "mlp": ("neural network, one hidden layer of 32", dict(hidden=(32,))),
}
IMAGE_NETWORK = ("small CNN (conv 8 → pool → conv 16 → pool → softmax)",
                 dict(kind="cnn", filters=(8, 16), hidden=()))
NO_INFO = {"median": "training median", "mean": "training mean", "background": "0 (blank background)"}
COLOURS = {"original": charts.INLIER, "PN": charts.OUTLIER, "PP": "#54A24B"}
CHANGE_TOLERANCE = 1e-5  # changes smaller than this (in model units) are float noise of the search, shown as 0
# Widgets whose defaults depend on the dataset or on the trained model: reset when those change.
DATA_WIDGETS = ("cem:label", "cem:features", "cem:network", "cem:epochs", "cem:batch", "cem:lr", "cem:ae_epochs")
EXPLAIN_WIDGETS = ("cem:kappa", "cem:c_init", "cem:max_iterations", "cem:no_info")


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Prepared:
    """The chosen table as the classifier sees it: standardised features (tables) or pixels in [0, 1] (images)."""

    table_name: str
    feature_names: list[str]
    class_names: list[str]
    image_shape: tuple[int, ...] | None
    X_train: np.ndarray  # model units
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_rows: np.ndarray  # positions of the test rows in the table
    offset: np.ndarray  # table value = model value * scale + offset
    scale: np.ndarray
    split: str
    notes: list[str] = field(default_factory=list)

    @property
    def is_image(self) -> bool:
        return self.image_shape is not None

    @property
    def feature_range(self) -> tuple:
        """Where an explanation may go: the pixel range, or each feature's range over the training rows."""
        if self.is_image:
            return 0.0, 1.0
        return self.X_train.min(axis=0), self.X_train.max(axis=0)

    def to_table_units(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * self.scale + self.offset

    def text(self, values: np.ndarray, signed: bool = False) -> list[str]:
        """Values of every feature (in table units) as text, to about three significant digits of its spread.

        The spread, not the value, sets the digits: a feature with a standard deviation of 7,000 shows whole
        numbers (and float noise of the model's float32 units shows as 0), one of 0.4 shows three decimals.
        """
        decimals = np.clip(2 - np.floor(np.log10(self.scale)), 0, 8).astype(int)
        return [number_text(v, d, signed) for v, d in zip(np.asarray(values, dtype=np.float64), decimals)]


def number_text(value: float, decimals: int, signed: bool = False) -> str:
    """``value`` with thousands separators and at most ``decimals`` decimals, trailing zeros dropped."""
    text = f"{value:{'+' if signed else ''},.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "+0") else text


def prepare(table, features, label, image_shape, split_column, test_share, max_train, seed) -> Prepared:
    """Encode, split and scale the table; raises DataError with what to change."""
    if len(features) > MAX_FEATURES:
        raise DataError(f"{len(features):,} feature columns are selected; at most {MAX_FEATURES:,} are allowed.")
    data = classification_data(table.frame, features, label, split_column=split_column, test_size=test_share,
                               seed=seed, max_train_rows=max_train)
    if data.categorical_names:
        names = ", ".join(data.feature_names[i] for i in data.categorical_names)
        raise DataError(f"text or boolean feature columns ({names}) cannot be moved continuously by CEM; "
                        "leave them out of the features.")
    notes = list(data.notes)
    complete_train = ~np.isnan(data.X_train).any(axis=1)
    complete_test = ~np.isnan(data.X_test).any(axis=1)
    dropped = int((~complete_train).sum() + (~complete_test).sum())
    if dropped:
        notes.append(f"{dropped:,} row(s) with missing feature values were left out.")
    X_train, y_train = data.X_train[complete_train], data.y_train[complete_train]
    X_test, y_test = data.X_test[complete_test], data.y_test[complete_test]
    if len(X_train) < MIN_TRAIN_ROWS or len(X_test) < 1:
        raise DataError(f"{len(X_train)} training and {len(X_test)} test row(s) have all feature values; at least "
                        f"{MIN_TRAIN_ROWS} training rows and one test row are needed. Choose other columns or fill "
                        "the missing values on the Data page.")
    if len(np.unique(y_train)) < 2:
        raise DataError("the complete training rows hold a single class; use more rows or other columns.")
    n = X_train.shape[1]
    if image_shape is not None:  # one intensity scale for all pixels: 0 stays the blank background
        offset, scale = np.zeros(n), np.full(n, max(float(X_train.max()), 1e-12))
    else:
        scaler = Standardizer().fit(X_train)
        offset, scale = np.asarray(scaler.mean_, dtype=np.float64), np.asarray(scaler.scale_, dtype=np.float64)

    def to_model(X):
        return ((X - offset) / scale).astype(np.float32)

    return Prepared(table.name, list(data.feature_names), list(data.class_names), image_shape, to_model(X_train),
                    y_train, to_model(X_test), y_test, data.test_rows[complete_test], offset, scale, data.split, notes)


# ------------------------------------------------------------------------------------------------ jobs


@dataclass
class ModelRun:
    data: Prepared
    classifier: TrainedNetwork | None  # the keras classifier trained here, as its spec and weights
    network: str
    history: TrainingHistory | None
    test_proba: np.ndarray
    test_accuracy: float | None  # None: an uploaded model whose classes are not values of the label column
    explainers: dict = field(default_factory=dict)  # compiled CEMs, reused by later explanations of this model
    own: own_model.OwnModel | None = None  # an uploaded model, used instead of one trained here
    class_map: own_model.ClassMap | None = None
    _own_model: object = field(default=None, repr=False)

    @property
    def white_box(self) -> bool:
        """Whether CEM gets exact gradients (a Keras model) rather than numerical ones (a black box)."""
        return self.own is None or self.own.white_box

    @property
    def model(self):
        """The classifier of the page's units, built in this process the first time an explanation needs it.

        An uploaded model reads the table's units: a Keras one is wrapped with the unit change (gradients flow
        through it); any other becomes a function CEM treats as a black box.
        """
        if self.own is None:
            return self.classifier.build()
        if self._own_model is None:
            data, predictor = self.data, self.own.predictor
            if self.own.white_box:
                self._own_model = teacher_network(predictor, data.offset, data.scale)
            else:
                self._own_model = lambda X: predictor(data.to_table_units(X))
        return self._own_model

    def warm_up(self) -> None:
        """Compile the PN and PP searches the first explanation runs (default settings), on one test row.

        Called as soon as the classifier is ready, in its job, so that the first explanation a user asks for
        does not wait for XLA to compile (the iterations and c steps are inputs of the compiled loop: a short
        search compiles the same program). Black-box models have nothing to compile.
        """
        if not self.white_box:
            return
        for mode in ("PN", "PP"):
            self.explainer(mode, default_no_info(self.data), None)[0].warm_up(self.data.X_test[:1])

    def explainer(self, mode: str, no_info: str, ae_model) -> tuple[CEM, bool]:
        """The CEM for ``mode`` with this no-information value and autoencoder; True when newly built."""
        key = (mode, no_info, None if ae_model is None else id(ae_model))
        if key in self.explainers:
            return self.explainers[key], False
        cem = CEM(self.model, mode=mode, shape=(1, len(self.data.feature_names)),
                  feature_range=self.data.feature_range, ae_model=ae_model,
                  no_info_val=0.0 if no_info == "background" else None)
        if no_info != "background":
            cem.fit(self.data.X_train, no_info_type=no_info)
        self.explainers[key] = cem
        return cem, True


@dataclass
class AutoencoderRun:
    data: Prepared
    network: TrainedNetwork  # the trained keras autoencoder, as its spec and weights
    test_mse: float

    @property
    def model(self):
        return self.network.build()


@dataclass
class CEMRun:
    """The PN and / or PP of one test row, with the settings they were searched with."""

    model_run: ModelRun
    position: int  # in the test split
    explanations: dict[str, Explanation]
    settings: dict


def train_classifier_job(data: Prepared, network: str, controls):
    """Start the classifier's training in a worker (``classifier.train``); returns the job, None if refused."""
    name, spec = IMAGE_NETWORK if data.is_image else TABULAR_NETWORKS[network]

    def finish(values: dict, out: dict) -> ModelRun:
        run = ModelRun(data, TrainedNetwork.from_answer(values["spec"], out), name,
                       TrainingHistory(**values["history"]), out["val_proba"], values["metrics"]["val_accuracy"])
        run.warm_up()
        return run

    params = {**controls.params(), "network": {"kind": "mlp", **spec}, "n_features": len(data.feature_names),
              "n_classes": len(data.class_names), "image_shape": data.image_shape, "return_val_proba": True}
    arrays = {"X": data.X_train, "y": data.y_train, "X_val": data.X_test, "y_val": data.y_test}
    return training.start_task(MODEL_JOB, f"Train classifier on {data.table_name}", "classifier.train", params,
                               arrays, finish)


def use_own_model_job(data: Prepared, model: own_model.OwnModel, class_map: own_model.ClassMap):
    """Start scoring the test rows with an uploaded model (in a job thread); returns the job, None if refused."""
    def use(job) -> ModelRun:
        job.set_stage("predicting the test rows with your model", 0.0)
        proba = own_model.predict_in_batches(model.predictor, data.to_table_units(data.X_test))
        accuracy = own_model.accuracy(proba, data.y_test)
        run = ModelRun(data, None, own_model.describe(model), None, proba, accuracy, own=model, class_map=class_map)
        job.set_stage("preparing the explainer", 1.0)
        run.warm_up()
        job.set_stage("your model is ready" + ("" if accuracy is None else f", test accuracy {accuracy:.3f}"), 1.0)
        return run

    return training.start(MODEL_JOB, f"Use {model.file_name} on {data.table_name}", use)


def for_own_model(data: Prepared, model: own_model.OwnModel) -> tuple[Prepared, own_model.ClassMap]:
    """The prepared data with the model's classes: ``class_names`` are its outputs, labels its columns (-1: none)."""
    model.predictor.check(data.to_table_units(data.X_train))
    class_map = own_model.ClassMap.between(model.class_names, data.class_names)
    data.class_names = class_map.shown_names
    data.y_train = class_map.labels_for_model(data.y_train)
    data.y_test = class_map.labels_for_model(data.y_test)
    return data, class_map


def default_no_info(data: Prepared) -> str:
    """The no-information value the page offers first: the background for images, the median for tables."""
    return "background" if data.is_image else "median"


def true_class(data: Prepared, code: int) -> str:
    return data.class_names[int(code)] if code >= 0 else "— (not a class of the model)"


def train_autoencoder_job(data: Prepared, epochs: int, controls) -> None:
    """Start the autoencoder's training in a worker (``autoencoder.train``)."""
    def finish(values: dict, out: dict) -> AutoencoderRun:
        return AutoencoderRun(data, TrainedNetwork.from_answer(values["spec"], out), values["metrics"]["val_mse"])

    params = {**controls.params(), "epochs": epochs, "n_features": len(data.feature_names),
              "output_activation": "sigmoid" if data.is_image else "linear"}
    training.start_task(AE_JOB, f"Train autoencoder on {data.table_name}", "autoencoder.train", params,
                        {"X": data.X_train, "X_val": data.X_test}, finish)


def with_context(exp: Explanation, data: Prepared, position: int) -> Explanation:
    """The explanation with what a reader of its JSON needs to map it back to the table."""
    context = {
        "dataset": data.table_name, "test_row": position, "table_row": int(data.test_rows[position]),
        "feature_names": data.feature_names, "class_names": data.class_names,
        "model_units": ("pixel value / scale" if data.is_image else "(value - offset) / scale, standardised "
                        "with the training rows"), "offset": data.offset, "scale": data.scale,
    }
    return Explanation(meta={**exp.meta, "lantern": context}, data=exp.data)


def explain_job(job, run: ModelRun, ae_model, position: int, modes: list[str], settings: dict) -> CEMRun:
    data = run.data
    x = data.X_test[position:position + 1]
    c_steps = settings["c_steps"]
    total = len(modes) * c_steps
    explanations = {}
    for i, mode in enumerate(modes):
        cem, fresh = run.explainer(mode, settings["no_info"], ae_model if settings["gamma"] > 0 else None)
        for name in ("kappa", "beta", "gamma", "c_init", "c_steps", "max_iterations", "learning_rate_init"):
            setattr(cem, name, settings[name])
        done = i * c_steps
        job.set_stage(f"{mode}: compiling the optimisation loop (a few seconds the first time)" if fresh and
                      run.white_box else f"{mode}: searching", done / total)

        def report(event: dict, done=done, mode=mode) -> None:
            status = "found" if event["found"] else "none found yet"
            job.report({"fraction": (done + event["c_step"]) / total,
                        "message": f"{mode}: c step {event['c_step']}/{event['c_steps']} · {status}"})

        explanations[mode] = with_context(cem.explain(x, progress=report, cancel=job.cancel), data, position)
    found = [f"{mode} {'found' if bool(exp.found[0]) else 'not found'}" for mode, exp in explanations.items()]
    job.set_stage(", ".join(found), 1.0)
    return CEMRun(run, position, explanations, settings)


# ------------------------------------------------------------------------------------------------ figures


def probability_figure(class_names: list[str], rows: dict[str, np.ndarray], title: str) -> go.Figure:
    """Class probabilities of the original and its explanations, grouped by class."""
    fig = go.Figure()
    for name, proba in rows.items():
        proba = np.asarray(proba, dtype=float).ravel()
        fig.add_trace(go.Bar(x=class_names, y=proba, name=name, marker_color=COLOURS.get(name.split()[0]),
                             text=[f"{p:.2f}" for p in proba] if len(class_names) <= 6 else None,
                             textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, barmode="group", xaxis=dict(title="class", type="category"),
                      yaxis=dict(title="probability", range=[0, 1.12]), margin=dict(l=10, r=10, t=40, b=10),
                      height=320, legend=dict(orientation="h", y=-0.25))
    return fig


def changes_table(run: CEMRun) -> pd.DataFrame:
    """One row per feature, as text in table units: the original, each explanation, their changes and the
    no-information value."""
    data = run.model_run.data
    first = run.explanations[next(iter(run.explanations))]
    x = first.X[0]
    frame = pd.DataFrame({"feature": data.feature_names, "original": data.text(data.to_table_units(x))})
    for mode, exp in run.explanations.items():
        if bool(exp.found[0]):
            delta = np.where(np.abs(exp.delta[0]) < CHANGE_TOLERANCE, 0.0, exp.delta[0])
            frame[mode] = data.text(data.to_table_units(x + delta))
            frame[f"{mode} − original"] = data.text(delta * data.scale, signed=True)
    frame["no-information value"] = data.text(data.to_table_units(first.no_info_val))
    return frame


def changed_features(data: Prepared, exp: Explanation, limit: int = 5) -> list[int]:
    """Features the explanation moved, largest change (in standard deviations) first."""
    delta = np.abs(exp.delta[0])
    order = [int(j) for j in np.argsort(-delta) if delta[j] >= CHANGE_TOLERANCE]
    return order[:limit] if limit else order


def pn_sentence(data: Prepared, exp: Explanation) -> str:
    x, pn = data.text(data.to_table_units(exp.X[0])), data.text(data.to_table_units(exp.PN[0]))
    moved = changed_features(data, exp)
    parts = [f"**{data.feature_names[j]}** were {pn[j]} instead of {x[j]}" for j in moved]
    extra = len(changed_features(data, exp, limit=0)) - len(moved)
    return (f"The model would predict **{data.class_names[int(exp.PN_pred)]}** instead of "
            f"**{data.class_names[int(exp.X_pred)]}** if " + ", ".join(parts)
            + (f" (and {extra} smaller change(s))" if extra > 0 else "") + ".")


def pp_sentence(data: Prepared, exp: Explanation) -> str:
    x, pp, no_info = (data.text(data.to_table_units(v)) for v in (exp.X[0], exp.PP[0], exp.no_info_val))
    kept = [j for j in np.argsort(-np.abs(exp.PP[0] - exp.no_info_val))
            if abs(exp.PP[0][j] - exp.no_info_val[j]) >= CHANGE_TOLERANCE]
    cls = data.class_names[int(exp.PP_pred)]
    if not kept:
        return (f"The model predicts **{cls}** even with every feature at its no-information value: nothing of "
                "this row is needed for that.")
    parts = [f"**{data.feature_names[j]}** = {pp[j]} (original {x[j]}, no information {no_info[j]})"
             for j in kept[:5]]
    more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
    return (f"The model still predicts **{cls}** when only these features keep (part of) their value and every "
            f"other feature is set to its no-information value: " + ", ".join(parts) + more + ".")


def not_found_hint(mode: str, settings: dict) -> str:
    what = "change the class" if mode == "PN" else "keep the class with less of the row"
    hint = ("Try a larger **c_init** or more **c steps** (the attack weight grows tenfold per step while nothing is "
            "found), more **iterations**, or a smaller **kappa**")
    if settings["gamma"] > 0:
        hint += " or **gamma**"
    if mode == "PN":
        hint += (". No PN exists when no change within the allowed range (each feature's training range, or 0–1 "
                 "for pixels) reaches another class")
    else:
        hint += ". A PP exists only when the model predicts the original itself with margin kappa"
    name = MODES[mode][:1].lower() + MODES[mode][1:]
    return (f"No {name} found: in {settings['c_steps']} c step(s) × {settings['max_iterations']:,} iterations the "
            f"search found no point inside the allowed range that would {what} with margin kappa = "
            f"{settings['kappa']:g}. {hint}.")


# ------------------------------------------------------------------------------------------------ results


@st.fragment
def results(run: CEMRun) -> None:
    data, settings = run.model_run.data, run.settings
    first = run.explanations[next(iter(run.explanations))]
    original = data.class_names[int(first.X_pred)]
    st.subheader(f"Explanation of test row {run.position} (table row {int(data.test_rows[run.position])})")

    cols = st.columns(1 + len(run.explanations))
    cols[0].metric("Original predicted as", original, help=f"Probability {float(first.X_proba[0].max()):.3f}.")
    rows = {"original": first.X_proba[0]}
    for col, (mode, exp) in zip(cols[1:], run.explanations.items()):
        if bool(exp.found[0]):
            cls = data.class_names[int(exp.data[f"{mode}_pred"])]
            col.metric(f"{mode} predicted as", cls, help=f"Probability {float(np.max(exp.data[f'{mode}_proba'])):.3f}"
                       f"; found with c = {float(exp.best_c[0]):.4g}.")
            rows[mode] = exp.data[f"{mode}_proba"][0]
        else:
            col.metric(f"{mode} predicted as", "not found")
    for mode, exp in run.explanations.items():
        if not bool(exp.found[0]):
            st.warning(not_found_hint(mode, settings), icon=":material/search_off:")
    st.plotly_chart(probability_figure(data.class_names, rows, "Class probabilities: original and explanations"),
                    key="cem:proba")
    found = {mode: exp for mode, exp in run.explanations.items() if bool(exp.found[0])}

    if data.is_image:
        panels, titles, signed = [first.X[0]], [f"original ({original})"], [False]
        if "PN" in found:
            pn = found["PN"]
            panels += [pn.PN[0], pn.delta[0]]
            titles += [f"PN ({data.class_names[int(pn.PN_pred)]})", "PN − original"]
            signed += [False, True]
        if "PP" in found:
            pp = found["PP"]
            panels += [pp.PP[0], -pp.delta[0]]
            titles += [f"PP ({data.class_names[int(pp.PP_pred)]})", "original − PP"]
            signed += [False, True]
        st.plotly_chart(images.image_grid(panels, titles, data.image_shape, diverging=signed, value_range=(0.0, 1.0),
                                          height=320), key="cem:images")
        notes = ["Dark = high intensity."]
        if "PN" in found:
            notes.append("**PN − original**: what the pertinent negative adds (red) or removes (blue) to change the "
                         "class.")
        if "PP" in found:
            notes.append("**original − PP**: the part of the original the pertinent positive does without (red); "
                         "what is left in the PP is enough for the prediction.")
        st.caption(" ".join(notes))
    else:
        table = changes_table(run)
        st.dataframe(table, key="cem:table", hide_index=True, height=min(35 * (len(table) + 1) + 3, 460),
                     column_config={c: st.column_config.TextColumn(alignment="right") for c in table.columns[1:]})
        if found:
            units = st.radio("Changes in", ["table units", "standard deviations"], horizontal=True, key="cem:units",
                             help="Table units are the data's own; standard deviations (of the training rows) "
                                  "compare features measured on different scales.")
            chart_cols = st.columns(len(found))
            for col, (mode, exp) in zip(chart_cols, found.items()):
                delta = np.where(np.abs(exp.delta[0]) < CHANGE_TOLERANCE, 0.0, exp.delta[0])
                values = delta * data.scale if units == "table units" else delta
                figure = charts.bar_figure(data.feature_names, values, f"{mode} − original", f"change ({units})")
                col.plotly_chart(figure.update_traces(marker_color=COLOURS[mode]), key=f"cem:bars:{mode}")
        if "PN" in found:
            st.markdown(pn_sentence(data, found["PN"]))
        if "PP" in found:
            st.markdown(pp_sentence(data, found["PP"]))

    st.markdown("**Export**")
    cols = st.columns(len(run.explanations))
    for col, (mode, exp) in zip(cols, run.explanations.items()):
        with col:
            downloads.json_button(f"{mode} explanation JSON", exp.to_json,
                                  f"cem_{mode.lower()}_test_row_{run.position}.json", key=f"cem:json:{mode}")
    st.caption("The JSON holds the explanation in the classifier's units (standardised features or pixels in "
               "[0, 1]); `meta.lantern` has the offset and scale that map it back to the table.")


# ------------------------------------------------------------------------------------------------ page

st.title("Contrastive explanations")
st.caption("CEM explains one prediction of a classifier by contrast. A **pertinent negative** (PN) is the smallest "
           "addition to the row that would change the predicted class: what must stay *absent* for this "
           "prediction. A **pertinent positive** (PP) is the smallest part of the row that on its own keeps the "
           "class: what must be *present*.")

st.subheader("1 · Data and classifier")
table, origin = ui_data.choose_table("cem", key="cem:dataset", default=DEFAULT_DATASET, needs_label=True)
columns = list(table.frame.columns)
bundled = get_dataset(origin.split(":", 1)[1]) if origin.startswith("bundled:") else None
if bundled is not None:
    image_shape = bundled.image_shape
else:
    image_shape = images.square_image_shape([c for c in columns if c != table.label])
small = len(table.frame) <= 2_000
dataset_id = f"{origin}|{table.name}|{'|'.join(columns)}"
if st.session_state.get("cem:dataset_id") != dataset_id:
    st.session_state["cem:dataset_id"] = dataset_id
    for key in DATA_WIDGETS:
        st.session_state.pop(key, None)
split_column = find_split_column(table.frame)
source, own = own_model.choose_model("cem")
if own is not None:
    st.caption("CEM needs gradients of the model: a Keras model gives exact ones (white box); an ONNX or "
               "scikit-learn model is a black box, so CEM estimates them numerically (slower). "
               + ("The model names its inputs, so they are read from the table by name."
                  if own.predictor.feature_names else
                  f"Choose its {own.predictor.n_features} feature column(s) below, in the order it was trained "
                  "on.") + " It gets them in the table's units.")

with st.form("cem:setup", border=False):
    label = st.selectbox("Label column (the classes to predict)", columns,
                         index=columns.index(table.label) if table.label in columns else 0, key="cem:label",
                         help="The classifier learns to predict this column; CEM explains its predictions.")
    if image_shape is not None:
        features = [c for c in columns if c not in (label, split_column)]
        st.caption(f"{table.name}: images of {image_shape[0]} × {image_shape[1]} pixels, one per row; all "
                   f"{len(features):,} pixel columns are features, scaled to [0, 1].")
    else:
        numeric = [c for c in ui_data.numeric_columns(table) if table.roles.get(c) != "categorical"]
        default = [c for c in numeric if table.roles.get(c) == "feature"]
        features = st.multiselect("Feature columns", numeric, default=default, key="cem:features",
                                  help="CEM moves features continuously, so only numeric columns can be used. They "
                                       "are standardised for the classifier and shown in their own units.")
        left_out = [c for c in columns if c not in numeric and c != label and table.roles.get(c) != "ignore"]
        if left_out:
            st.caption(f"Left out because they are not numeric or are categorical: {', '.join(left_out[:10])}"
                       + (f" and {len(left_out) - 10} more" if len(left_out) > 10 else "") + ".")
    with_ae = st.checkbox("Also train an autoencoder", key="cem:with_ae",
                          help="Needed for the gamma term, which keeps explanations close to the data the "
                               "autoencoder learned (recommended for images).")
    with st.expander("Classifier and training settings" if source == "train" else "Autoencoder and split settings"):
        if source == "own":
            network = None
        elif image_shape is None:
            network = st.selectbox("Classifier", list(TABULAR_NETWORKS), key="cem:network",
                                   format_func=lambda k: TABULAR_NETWORKS[k][0])
        else:
            network = "cnn"
            st.caption(f"Classifier: {IMAGE_NETWORK[0]}.")
        controls = training.controls("cem", epochs=100 if small else 10, batch_size=32 if small else 128,
                                     learning_rate=1e-2 if small and image_shape is None else 1e-3)
        cols = st.columns(3)
        ae_epochs = cols[0].number_input("Autoencoder epochs", 1, SETTINGS.max_epochs,
                                         min(100 if small else 10, SETTINGS.max_epochs), key="cem:ae_epochs",
                                         help="Used when the autoencoder box is ticked; it shares the batch size, "
                                              "learning rate and seed above.")
        test_share = cols[1].slider("Test share of a random split", 0.1, 0.5, 0.3, 0.05, key="cem:test_share",
                                    help="Stratified by class; used when there is no train / test column.")
        max_train = cols[2].number_input("Train on at most this many rows", 100, SETTINGS.max_train_rows,
                                         min(20_000, SETTINGS.max_train_rows), step=1000, key="cem:max_train",
                                         help=f"A random sample beyond that (at most {SETTINGS.max_train_rows:,}).")
        use_split = False
        if split_column is not None:
            use_split = st.checkbox(f"Use the `{split_column}` column for the train / test split", value=True,
                                    key="cem:use_split")
    submitted = st.form_submit_button("Train" if source == "train" else "Use this model", type="primary",
                                      icon=":material/model_training:", key="cem:train",
                                      disabled=source == "own" and own is None)

if submitted:
    if label in features:
        features = [c for c in features if c != label]
        st.info(f"`{label}` is the label, so it was left out of the features.")
    try:
        if own is not None:
            features = own_model.input_columns(own.predictor.feature_names, own.predictor.n_features, features,
                                               columns, label)
        prepared = prepare(table, features, label, image_shape, split_column if use_split else None,
                           float(test_share), int(max_train), controls.seed)
        if own is not None:
            prepared, class_map = for_own_model(prepared, own)
    except DataError as exc:
        ui_data.show_data_error(exc)
    except ModelError as exc:
        st.error(f"**{own.file_name}** does not fit these columns: {exc}", icon=":material/error:")
    else:
        training.forget(EXPLAIN_JOB)  # explanations and the autoencoder belong to the data they were made for
        training.forget(AE_JOB)
        if own is not None:
            started = use_own_model_job(prepared, own, class_map)
        else:
            started = train_classifier_job(prepared, network, controls)
        if started is not None and with_ae:
            train_autoencoder_job(prepared, int(ae_epochs), controls)

training.panel(MODEL_JOB)
training.panel(AE_JOB)
model_run: ModelRun | None = training.result(MODEL_JOB)
ae_run: AutoencoderRun | None = training.result(AE_JOB)
if model_run is not None and ae_run is not None and ae_run.data is not model_run.data:
    ae_run = None

if model_run is not None:
    data = model_run.data
    kind = "image" if data.is_image else "tabular"
    if st.session_state.get("cem:explain_kind") != kind:  # defaults differ for images and tables
        st.session_state["cem:explain_kind"] = kind
        for key in EXPLAIN_WIDGETS:
            st.session_state.pop(key, None)
    ae_id = None if ae_run is None else training.current(AE_JOB).id
    if st.session_state.get("cem:gamma_for") != ae_id:  # an autoencoder makes gamma > 0 the default
        st.session_state["cem:gamma_for"] = ae_id
        st.session_state.pop("cem:gamma", None)

    cols = st.columns(5)
    cols[0].metric("Test accuracy", "—" if model_run.test_accuracy is None else f"{model_run.test_accuracy:.3f}",
                   help=f"Share of the {len(data.y_test):,} test rows the classifier gets right.")
    cols[1].metric("Training rows", f"{len(data.y_train):,}")
    cols[2].metric("Test rows", f"{len(data.y_test):,}")
    cols[3].metric("Classes", f"{len(data.class_names)}")
    cols[4].metric("Autoencoder test MSE", "—" if ae_run is None else f"{ae_run.test_mse:.4g}",
                   help="Mean squared reconstruction error on the test rows (model units)."
                        if ae_run is not None else "No autoencoder trained: tick the box and train again to use "
                                                   "gamma > 0.")
    if model_run.class_map is not None and model_run.class_map.message():
        st.warning(model_run.class_map.message(), icon=":material/warning:")
    network_text = model_run.network if model_run.own else model_run.network[:1].upper() + model_run.network[1:]
    st.caption(f"{network_text} on {data.table_name}: "
               f"{len(data.feature_names):,} features, split by {data.split}. "
               + ("Pixels are divided by the largest training value." if data.is_image else
                  "Features are standardised with the training rows' mean and standard deviation.")
               + (" Your model gets them back in the table's units." if model_run.own else "")
               + " " + " ".join(note[:1].upper() + note[1:] for note in data.notes))

    st.subheader("2 · Pick a prediction to explain")
    n_test = len(data.y_test)
    position = int(st.number_input(f"Test row (0 – {n_test - 1:,})", 0, n_test - 1, 0, key="cem:row",
                                   help="Row number in the test split."))
    proba = model_run.test_proba[position]
    left, right = st.columns([1, 2])
    with left:
        st.metric("Model predicts", data.class_names[int(proba.argmax())], help="The classifier's class for this row.")
        st.metric("Probability", f"{proba.max():.3f}")
        st.metric("True class", true_class(data, data.y_test[position]))
        st.caption(f"Table row {int(data.test_rows[position])}")
    with right:
        if data.is_image:
            st.plotly_chart(images.image_grid([data.X_test[position]], [f"test row {position}"], data.image_shape,
                                              value_range=(0.0, 1.0), height=260), key="cem:instance_image")
        else:
            values = data.text(data.to_table_units(data.X_test[position]))
            st.dataframe(pd.DataFrame({"feature": data.feature_names, "value": values}), key="cem:instance",
                         hide_index=True, height=min(35 * (len(values) + 1) + 3, 320),
                         column_config={"value": st.column_config.TextColumn(alignment="right")})
        st.plotly_chart(probability_figure(data.class_names, {"original": proba}, "Class probabilities"),
                        key="cem:instance_proba")

    st.subheader("3 · Find pertinent negatives and positives")
    if model_run.own is not None and model_run.white_box:
        st.info("**White-box mode**: your Keras model gives CEM exact gradients (automatic differentiation).",
                icon=":material/functions:")
    elif model_run.own is not None:
        st.info(f"**Black-box mode**: your {own_model.KIND_NAMES[model_run.own.kind]} model gives no gradients, so "
                "CEM estimates them numerically (central differences: about two calls of the model per feature and "
                "iteration). Slower than a Keras model; fewer iterations often do.", icon=":material/deployed_code:")
    image = data.is_image
    with st.form("cem:explain-form", border=False):
        cols = st.columns(4)
        modes = cols[0].multiselect("Explanations", list(MODES), default=list(MODES), key="cem:modes",
                                    help="PN: pertinent negative (what must stay absent); PP: pertinent positive "
                                         "(what must be present). Each is a separate search.")
        kappa = cols[1].number_input("kappa (confidence margin)", 0.0, 1.0, 0.0 if image else 0.2, 0.05,
                                     key="cem:kappa",
                                     help="How much more probable the PN's new class (or the PP's kept class) must "
                                          "be than any other class.")
        beta = cols[2].number_input("beta (L1 weight)", 0.0, 10.0, 0.1, 0.05, key="cem:beta",
                                    help="Larger values change fewer features.")
        gamma = cols[3].number_input("gamma (autoencoder weight)", 0.0, 1000.0,
                                     0.0 if ae_run is None else (100.0 if image else 1.0), 1.0, key="cem:gamma",
                                     help="Keeps the explanation close to what the autoencoder can reconstruct; "
                                          "needs the autoencoder (section 1).")
        cols = st.columns(5)
        c_init = cols[0].number_input("c_init (attack weight)", 0.01, 10_000.0, 1.0 if image else 10.0,
                                      key="cem:c_init", help="Initial weight of the class-change term.")
        c_steps = cols[1].number_input("c steps", 1, MAX_C_STEPS, 5, key="cem:c_steps",
                                       help=f"Values of c tried (at most {MAX_C_STEPS}): ×10 while nothing is "
                                            "found, then bisection.")
        max_iterations = cols[2].number_input("Iterations per c step", 10, SETTINGS.max_iterations,
                                              min(500 if image else 1000, SETTINGS.max_iterations), step=100,
                                              key="cem:max_iterations",
                                              help=f"At most {SETTINGS.max_iterations:,} on this server.")
        no_info_options = ["background", "median", "mean"] if image else ["median", "mean"]  # default_no_info first
        no_info = cols[3].selectbox("No-information value", no_info_options, key="cem:no_info",
                                    format_func=NO_INFO.get,
                                    help="The value a feature takes when it carries no evidence: PNs move features "
                                         "away from it, PPs towards it.")
        learning_rate = cols[4].select_slider("Learning rate", [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], value=1e-2,
                                              key="cem:lr_init", format_func=lambda v: f"{v:g}",
                                              help="Initial step size, decayed to 0 over the iterations.")
        explain = st.form_submit_button("Explain this prediction", type="primary", icon=":material/compare:",
                                        key="cem:explain")
    if explain:
        if not modes:
            st.error("Choose at least one explanation: a pertinent negative (PN), a pertinent positive (PP) or both.",
                     icon=":material/error:")
        elif gamma > 0 and ae_run is None:
            st.error("gamma > 0 needs an autoencoder: tick **Also train an autoencoder** in section 1 and train "
                     "again, or set gamma to 0.", icon=":material/error:")
        else:
            settings = {"kappa": float(kappa), "beta": float(beta), "gamma": float(gamma), "c_init": float(c_init),
                        "c_steps": int(c_steps), "max_iterations": int(max_iterations), "no_info": no_info,
                        "learning_rate_init": float(learning_rate)}
            chosen = [m for m in MODES if m in modes]
            ae_model = None if ae_run is None else ae_run.model
            training.start(EXPLAIN_JOB, f"Explain test row {position}", lambda job: explain_job(
                job, model_run, ae_model, position, chosen, settings), kind="explain")

    explain_job_state = training.panel(EXPLAIN_JOB, show_loss=False)
    cem_run: CEMRun | None = training.result(EXPLAIN_JOB)
    if cem_run is not None and cem_run.model_run is model_run:
        results(cem_run)
    elif explain_job_state is None:
        st.info("Pick a test row and press **Explain this prediction**.")
elif training.current(MODEL_JOB) is None:
    st.info("Choose the label and feature columns and press **Train**. Bundled iris works out of the box: it "
            "predicts the species of a flower from four measurements in cm.")
