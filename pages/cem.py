"""Contrastive explanations: train a classifier, then find what one prediction needs absent (PN) and present (PP)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import jobs.explain as explain_jobs
import jobs.models as models_jobs
import workflows.cem as flow
from engine.datasets import get_dataset
from engine.tabular import find_split_column
from ui import charts, downloads, hints, images, own_model, training
from ui import data as ui_data
from ui import explain as ui_explain
from jobs.models import FitSettings, ModelFile, train_autoencoder_job, train_classifier_job
from ui.settings import SETTINGS
from workflows.explain_data import row_label

MODEL_JOB, AE_JOB, WARM_JOB, EXPLAIN_JOB = "cem-model", "cem-ae", "cem-warm", "cem-explain"
DEFAULT_DATASET = "bundled:iris"
# Widgets whose defaults depend on the dataset or on the trained model: reset when those change.
DATA_WIDGETS = ("cem:label", "cem:features", "cem:network", "cem:epochs", "cem:batch", "cem:lr", "cem:ae_epochs")
EXPLAIN_WIDGETS = ("cem:kappa", "cem:c_init", "cem:max_iterations", "cem:no_info")
HELP = flow.HELP


def model_view(answer, context) -> flow.ModelView:
    """The page's view of the model job: a network trained here (``classifier.train``) or an uploaded model."""
    data, own, class_map, name = context
    if own is None:
        return flow.trained_view(answer, data, name)
    return flow.own_view(answer.proba, data, model_file(own), own_model.describe(own), own.white_box, class_map,
                         models_jobs.accuracy(answer.proba, data.y_test))


def model_file(own: own_model.OwnModel) -> ModelFile:
    return ModelFile(own.data, own.kind, SETTINGS.trusted_mode, SETTINGS.max_model_mb)


def fit_settings(controls: training.TrainingControls, epochs: int | None = None) -> FitSettings:
    return FitSettings(epochs or controls.epochs, controls.batch_size, controls.learning_rate, controls.seed)


def start_model(data, network: str | None, controls, own, class_map) -> bool:
    """Train the classifier here, or score the test rows with the uploaded model; True when the job started."""
    if own is not None:
        request = explain_jobs.PredictRequest(model_file(own), data.to_table_units(data.X_test))
        return training.start_job(MODEL_JOB, f"Use {own.file_name} on {data.table_name}", explain_jobs.predict,
                                  request, context=(data, own, class_map, None)) is not None
    name, request = flow.classifier_request(data, network, fit_settings(controls))
    return training.start_job(MODEL_JOB, f"Train classifier on {data.table_name}", train_classifier_job, request,
                              context=(data, None, None, name)) is not None


@st.fragment
def results(run: flow.CEMView) -> None:
    data, settings, hits = run.model.data, run.settings, flow.found(run)
    first = run.explanations[next(iter(run.explanations))]
    original = data.class_names[int(first.X_pred)]
    st.subheader(f"Explanation of {row_label(run.table_row)}")
    cols = st.columns(1 + len(run.explanations))
    cols[0].metric("Original predicted as", original, help=f"Probability {float(first.X_proba[0].max()):.3f}.")
    rows = {"original": first.X_proba[0]}
    for col, (mode, exp) in zip(cols[1:], run.explanations.items()):
        if mode in hits:
            col.metric(f"{mode} predicted as", data.class_names[int(exp.data[f"{mode}_pred"])],
                       help=f"Probability {float(np.max(exp.data[f'{mode}_proba'])):.3f}; found with c = "
                            f"{float(exp.best_c[0]):.4g}.")
            rows[mode] = exp.data[f"{mode}_proba"][0]
        else:
            col.metric(f"{mode} predicted as", "not found")
            st.warning(flow.not_found_hint(mode, settings), icon=":material/search_off:")
    st.plotly_chart(flow.probability_figure(data.class_names, rows, "Class probabilities: original and explanations"),
                    key="cem:proba")
    if data.is_image:
        panels, titles, signed, notes = flow.image_panels(run)
        st.plotly_chart(images.image_grid(panels, titles, data.image_shape, diverging=signed, value_range=(0.0, 1.0),
                                          height=320), key="cem:images")
        st.caption(" ".join(notes))
    else:
        table = flow.changes_table(run)
        st.dataframe(table, key="cem:table", hide_index=True, height=min(35 * (len(table) + 1) + 3, 460),
                     column_config={c: st.column_config.TextColumn(alignment="right") for c in table.columns[1:]})
        if hits:
            units = st.radio("Changes in", ["table units", "standard deviations"], horizontal=True, key="cem:units",
                             help="Table units are the data's own; standard deviations (of the training rows) "
                                  "compare features measured on different scales.")
            for col, (mode, exp) in zip(st.columns(len(hits)), hits.items()):
                delta = flow.clean_delta(exp)
                values = delta * data.scale if units == "table units" else delta
                figure = charts.bar_figure(data.feature_names, values, f"{mode} − original", f"change ({units})")
                col.plotly_chart(figure.update_traces(marker_color=flow.COLOURS[mode]), key=f"cem:bars:{mode}")
        for mode, sentence in (("PN", flow.pn_sentence), ("PP", flow.pp_sentence)):
            if mode in hits:
                st.markdown(sentence(data, hits[mode]))
    st.markdown("**Export**")
    for col, (mode, exp) in zip(st.columns(len(run.explanations)), run.explanations.items()):
        with col:
            downloads.json_button(f"{mode} explanation JSON", exp.to_json, flow.json_name(mode, run.table_row),
                                  key=f"cem:json:{mode}")
    st.caption("The JSON holds the explanation in the classifier's units (standardised features or pixels in "
               "[0, 1]); `meta.lantern` has the table row, and the offset and scale that map it back to the table.")


st.title("Contrastive explanations")
st.caption("CEM explains one prediction of a classifier by contrast. A **pertinent negative** (PN) is the smallest "
           "change to the row (features raised or lowered; ink added or removed in an image) that would change the "
           "predicted class: what must stay *absent* for this prediction. A **pertinent positive** (PP) is the "
           "smallest part of the row that on its own keeps the class: what must be *present*.")

st.subheader("1 · Data and classifier")
table, origin = ui_data.choose_table("cem", key="cem:dataset", default=DEFAULT_DATASET, needs_label=True)
columns = list(table.frame.columns)
bundled = get_dataset(origin.split(":", 1)[1]) if origin.startswith("bundled:") else None
image_shape = bundled.image_shape if bundled is not None else images.square_image_shape(
    [c for c in columns if c != table.label])
small = len(table.frame) <= 2_000
ui_explain.reset_on_change("cem", f"{origin}|{table.name}|{'|'.join(columns)}", DATA_WIDGETS)
split_column = find_split_column(table.frame)
source, own = own_model.choose_model("cem")
if own is not None:
    st.caption(flow.own_model_caption(own.predictor.feature_names, own.predictor.n_features))

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
        features = st.multiselect("Feature columns", numeric, key="cem:features",
                                  default=[c for c in numeric if table.roles.get(c) == "feature"],
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
        network = None
        if source == "train" and image_shape is None:
            network = st.selectbox("Classifier", list(flow.TABULAR_NETWORKS), key="cem:network",
                                   format_func=lambda k: flow.TABULAR_NETWORKS[k][0])
        elif source == "train":
            st.caption(f"Classifier: {flow.IMAGE_NETWORK[0]}.")
        controls = training.controls("cem", epochs=100 if small else 10, batch_size=32 if small else 128,
                                     learning_rate=1e-2 if small and image_shape is None else 1e-3)
        cols = st.columns(3)
        ae_epochs = cols[0].number_input("Autoencoder epochs", 1, SETTINGS.max_epochs,
                                         min(100 if small else 10, SETTINGS.max_epochs), key="cem:ae_epochs",
                                         help="Used when the autoencoder box is ticked; it shares the batch size, "
                                              "learning rate and seed above.")
        split = ui_explain.split_form("cem", split_column, test_share=0.3, max_train=20_000, columns=cols[2:0:-1])
    submitted = st.form_submit_button("Train" if source == "train" else "Use this model", type="primary",
                                      icon=":material/model_training:", key="cem:train",
                                      disabled=source == "own" and own is None)



def prepare(features: list[str]) -> tuple[flow.Prepared, own_model.ClassMap | None]:
    prepared = flow.prepare(table, features, label, image_shape, split_column if split.use_split else None,
                            split.test_share, split.max_train, controls.seed)
    if own is None:
        return prepared, None
    own.predictor.check(prepared.to_table_units(prepared.X_train))
    class_map = own_model.ClassMap.between(own.class_names, prepared.class_names)
    return flow.for_own_model(prepared, class_map), class_map


ready = ui_explain.prepare_or_explain(own, features, label, columns, prepare) if submitted else None
if ready is not None:
    for key in (EXPLAIN_JOB, AE_JOB, WARM_JOB):  # they belong to the data they were made for
        training.forget(key)
    if start_model(ready[0], network, controls, own, ready[1]) and with_ae:
        training.start_job(AE_JOB, f"Train autoencoder on {ready[0].table_name}", train_autoencoder_job,
                           flow.autoencoder_request(ready[0], fit_settings(controls, int(ae_epochs))),
                           context=ready[0])

training.panel(MODEL_JOB)
training.panel(AE_JOB)
model_run: flow.ModelView | None = training.outcome(MODEL_JOB, model_view)
ae_run: flow.AutoencoderView | None = training.outcome(AE_JOB, flow.autoencoder_view)
if model_run is not None and ae_run is not None and ae_run.data is not model_run.data:
    ae_run = None

if model_run is not None:
    data = model_run.data
    ae_active = training.current(AE_JOB) is not None and training.current(AE_JOB).active
    model_id = training.current(MODEL_JOB).id
    if model_run.white_box and st.session_state.get("cem:warmed_for") != model_id and not ae_active:
        st.session_state["cem:warmed_for"] = model_id  # compile the default searches before the first explanation
        training.start_job(WARM_JOB, "Prepare the explainer", explain_jobs.warm_up_cem, flow.warm_up_request(model_run),
                           kind="explain")
    ui_explain.reset_on_change("cem:explain", "image" if data.is_image else "tabular", EXPLAIN_WIDGETS)
    ui_explain.reset_on_change("cem:gamma", str(None if ae_run is None else training.current(AE_JOB).id),
                               ("cem:gamma",))  # an autoencoder makes gamma > 0 the default
    cols = ui_explain.model_metrics(model_run.test_accuracy, len(data.y_train), len(data.y_test),
                                    len(data.class_names), columns=5)
    cols[4].metric("Autoencoder test MSE", "—" if ae_run is None else f"{ae_run.test_mse:.4g}",
                   help="Mean squared reconstruction error on the test rows (model units)." if ae_run is not None
                   else "No autoencoder trained: tick the box and train again to use gamma > 0.")
    ui_explain.class_map_warning(model_run.class_map)
    st.caption(flow.summary_caption(model_run))
    hints.convergence(hints.history_loss(model_run.history), model="explained classifier")
    if ae_run is not None:
        hints.convergence(hints.history_loss(ae_run.history), model="autoencoder")

    table_row, position, proba, right = ui_explain.pick_prediction(
        "cem", data.test_rows, data.position, model_run.test_proba, lambda column: data.class_names[column],
        lambda at: flow.true_class(data, data.y_test[at]))
    with right:
        if data.is_image:
            st.plotly_chart(images.image_grid([data.X_test[position]], [row_label(table_row)], data.image_shape,
                                              value_range=(0.0, 1.0), height=260), key="cem:instance_image")
        else:
            values = data.text(data.to_table_units(data.X_test[position]))
            st.dataframe(pd.DataFrame({"feature": data.feature_names, "value": values}), key="cem:instance",
                         hide_index=True, height=min(35 * (len(values) + 1) + 3, 320),
                         column_config={"value": st.column_config.TextColumn(alignment="right")})
        st.plotly_chart(flow.probability_figure(data.class_names, {"original": proba}, "Class probabilities"),
                        key="cem:instance_proba")

    st.subheader("3 · Find pertinent negatives and positives")
    if model_run.own_kind is not None and model_run.white_box:
        st.info("**White-box mode**: your Keras model gives CEM exact gradients (automatic differentiation).",
                icon=":material/functions:")
    elif model_run.own_kind is not None:
        st.info(f"**Black-box mode**: your {own_model.KIND_NAMES[model_run.own_kind]} model gives no gradients, so "
                "CEM estimates them numerically (central differences: about two calls of the model per feature and "
                "iteration). Slower than a Keras model; fewer iterations often do.", icon=":material/deployed_code:")
    image = data.is_image
    with st.form("cem:explain-form", border=False):
        cols = st.columns(4)
        modes = cols[0].multiselect("Explanations", list(flow.MODES), default=list(flow.MODES), key="cem:modes",
                                    help=HELP["modes"])
        kappa = cols[1].number_input("kappa (confidence margin)", 0.0, 1.0, 0.0 if image else 0.2, 0.05,
                                     key="cem:kappa", help=HELP["kappa"])
        beta = cols[2].number_input("beta (L1 weight)", 0.0, 10.0, 0.1, 0.05, key="cem:beta", help=HELP["beta"])
        gamma = cols[3].number_input("gamma (autoencoder weight)", 0.0, 1000.0,
                                     0.0 if ae_run is None else (100.0 if image else 1.0), 1.0, key="cem:gamma",
                                     help=HELP["gamma"])
        cols = st.columns(5)
        c_init = cols[0].number_input("c_init (attack weight)", 0.01, 10_000.0, 1.0 if image else 10.0,
                                      key="cem:c_init", help=HELP["c_init"])
        c_steps = cols[1].number_input("c steps", 1, flow.MAX_C_STEPS, 5, key="cem:c_steps", help=HELP["c_steps"])
        max_iterations = cols[2].number_input("Iterations per c step", 10, SETTINGS.max_iterations,
                                              min(500 if image else 1000, SETTINGS.max_iterations), step=100,
                                              key="cem:max_iterations", help=HELP["max_iterations"]
                                              + f" At most {SETTINGS.max_iterations:,} on this server.")
        no_info = cols[3].selectbox("No-information value", ["background", "median", "mean"] if image else
                                    ["median", "mean"], key="cem:no_info", format_func=flow.NO_INFO.get,
                                    help=HELP["no_info"])
        learning_rate = cols[4].select_slider("Learning rate", [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], value=1e-2,
                                              key="cem:lr_init", format_func=lambda v: f"{v:g}",
                                              help=HELP["learning_rate"])
        explain = st.form_submit_button("Explain this prediction", type="primary", icon=":material/compare:",
                                        key="cem:explain")
    if explain and not modes:
        st.error("Choose at least one explanation: a pertinent negative (PN), a pertinent positive (PP) or both.",
                 icon=":material/error:")
    elif explain and gamma > 0 and ae_run is None:
        st.error("gamma > 0 needs an autoencoder: tick **Also train an autoencoder** in section 1 and train "
                 "again, or set gamma to 0.", icon=":material/error:")
    elif explain:
        settings = explain_jobs.CEMSettings(float(kappa), float(beta), float(gamma), float(c_init), int(c_steps),
                                            int(max_iterations), float(learning_rate), no_info)
        training.start_job(EXPLAIN_JOB, flow.explain_label(table_row), explain_jobs.explain_cem,
                           flow.explain_request(model_run, ae_run, table_row, modes, settings), kind="explain",
                           context=(model_run, table_row, settings))
    ui_explain.explain_tail(EXPLAIN_JOB, lambda answer, ctx: flow.cem_view(answer.explanations, *ctx),
                            lambda run: run.model is model_run, results)
elif training.current(MODEL_JOB) is None:
    st.info("Choose the label and feature columns and press **Train**. Bundled iris works out of the box: it "
            "predicts the species of a flower from four measurements in cm.")
