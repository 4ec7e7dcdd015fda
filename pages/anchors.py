"""Anchors: train a classifier on a table, then explain one of its predictions with an if-then rule."""

from __future__ import annotations

import numpy as np
import streamlit as st

import jobs.explain as explain_jobs
import jobs.models as models_jobs
import workflows.anchors as flow
from jobs.models import ModelFile
from engine.tabular import find_split_column
from ui import downloads, own_model, training
from ui import data as ui_data
from ui import explain as ui_explain
from ui.settings import SETTINGS
from workflows.explain_data import row_label

MODEL_JOB, EXPLAIN_JOB = "anchors-model", "anchors-explain"
DEFAULT_DATASET = "bundled:adult"
HELP = flow.HELP


def model_view(answer, context) -> flow.ModelView:
    """The page's view of the model job: a forest grown here, or an uploaded model's test-split predictions."""
    data, model, own, table_name = context
    if own is None:
        return flow.forest_view(answer, data, model, table_name)
    class_map = own_model.ClassMap.between(own.class_names, data.class_names)
    accuracy = models_jobs.accuracy(answer.proba, class_map.labels_for_model(data.y_test))
    return flow.ModelView(data, model, class_map.shown_names, answer.proba, accuracy, table_name,
                          own_model.describe(own), class_map)


def start_model(data, own, n_trees: int, max_depth: int, seed: int, table_name: str) -> None:
    """Grow the forest, or score the test split with the uploaded model (both in a job)."""
    if own is not None:
        file = ModelFile(own.data, own.kind, SETTINGS.trusted_mode, SETTINGS.max_model_mb)
        model = explain_jobs.AnchorModel(own=file)
        training.start_job(MODEL_JOB, f"Use {own.file_name} on {table_name}", explain_jobs.predict,
                           explain_jobs.PredictRequest(model.own, data.X_test), context=(data, model, own, table_name))
        return
    forest = explain_jobs.ForestRequest(data.X_train, data.y_train, data.X_test, n_trees, max_depth, seed,
                                        SETTINGS.job_time_budget_s)
    training.start_job(MODEL_JOB, f"Train random forest on {table_name}", explain_jobs.train_forest, forest,
                       context=(data, explain_jobs.AnchorModel(forest=forest), None, table_name))


@st.fragment
def results(view: flow.AnchorView) -> None:
    run, exp = view.model, view.explanation
    raw, threshold = exp.raw, exp.meta["params"]["threshold"]
    predicted = flow.predicted_class(view)
    st.subheader(f"Anchor for {row_label(view.table_row)}")
    if exp.anchor:
        st.markdown(flow.anchor_markdown(view))
    else:
        st.info(f"No condition is needed: the model predicts **{flow.markdown_text(predicted)}** for "
                f"{raw['all_precision']:.1%} of the sampled rows, which already meets the threshold "
                f"{threshold:g}.", icon=":material/info:")
    if raw["success"]:
        st.success(f"Certified: {raw['message']}", icon=":material/verified:")
    else:
        st.warning(f"Not certified: {raw['message']} On this page: lower the precision threshold, train on more "
                   "rows, or try another seed.", icon=":material/warning:")
    held = view.held_out
    cols = st.columns(5)
    cols[0].metric("Precision", f"{exp.precision:.3f}",
                   help="Share of sampled rows satisfying the anchor that get the same prediction.")
    cols[1].metric("Coverage", f"{exp.coverage:.3f}", help="Share of training rows the anchor applies to.")
    cols[2].metric("Held-out precision", "—" if np.isnan(held["precision"]) else f"{held['precision']:.3f}",
                   help=f"On the test split: {held['n_agree']:,} of the {held['n_covered']:,} test rows the anchor "
                        "applies to get the same prediction.")
    cols[3].metric("Held-out coverage", f"{held['coverage']:.3f}",
                   help=f"{held['n_covered']:,} of {len(run.data.test_rows):,} test rows satisfy the anchor.")
    cols[4].metric("Rules", f"{len(exp.anchor)}")

    if raw["step_names"]:
        st.plotly_chart(flow.steps_figure(exp, threshold), key="anchors:steps")
        st.caption("Each added rule narrows the rows the anchor applies to (coverage falls) and makes their "
                   "prediction more uniform (precision rises) until it passes the threshold.")
        st.markdown("**Examples where the anchor holds**")
        n_steps = len(raw["step_names"])
        step = n_steps
        if n_steps > 1:
            step = st.select_slider("Anchor after rule", list(range(1, n_steps + 1)), value=n_steps,
                                    key="anchors:example_step",
                                    format_func=lambda s: f"{s}: {raw['step_names'][s - 1]}")
        examples = raw["examples"][step - 1]
        same, other = examples["covered_true"], examples["covered_false"]
        st.caption(f"Rows sampled while checking the anchor after rule {step} "
                   f"(“{raw['step_names'][step - 1]}”): all satisfy it.")
        order = flow.example_columns(view, step)
        names, categories = run.data.feature_names, run.data.categorical_names
        same_tab, other_tab = st.tabs([f"Same prediction ({predicted}): {len(same)}",
                                       f"Different prediction: {len(other)}"])
        with same_tab:
            if len(same):
                st.dataframe(flow.readable_rows(same, names, categories)[order], key="anchors:same", height=250)
            else:
                st.caption("No sampled row with this prediction.")
        with other_tab:
            if len(other):
                frame = flow.readable_rows(other, names, categories)[order]
                frame.insert(0, "predicted", view.different_predictions[step - 1])
                st.dataframe(frame, key="anchors:other", height=250)
            else:
                st.caption("None: every sampled row satisfying the anchor got the same prediction.")

    st.markdown("**Export**")
    downloads.json_button("Explanation JSON", exp.to_json, flow.json_name(view.table_row), key="anchors:json")


st.title("Anchors")
st.caption("AnchorTabular explains one prediction of a classifier with an if-then rule (an *anchor*): rows that "
           "satisfy the rule get the same prediction with high **precision**; **coverage** is the share of rows "
           "the rule applies to.")

st.subheader("1 · Data and classifier")
table, origin = ui_data.choose_table("anchors", key="anchors:dataset", kinds=("tabular",), default=DEFAULT_DATASET,
                                    needs_label=True)
columns = list(table.frame.columns)
split_column = find_split_column(table.frame)
# Another dataset has other columns: start its label and feature pickers from its own defaults.
ui_explain.reset_on_change("anchors", f"{origin}|{table.name}|{'|'.join(columns)}",
                           ("anchors:label", "anchors:features"))
source, own = own_model.choose_model("anchors")
if own is not None:
    if own.predictor.feature_names:
        st.caption("The model names its inputs, so they are read from the table by name: "
                   f"{own_model.quoted(own.predictor.feature_names, limit=12)} (the feature picker is not used).")
    else:
        st.caption(f"Choose its {own.predictor.n_features} feature column(s) below, in the order it was trained "
                   "on. Text columns reach the model as category codes 0, 1, … in alphabetical order of their "
                   "values (missing last), numbers as they are.")
with st.form("anchors:setup", border=False):
    label = st.selectbox("Label column (the classes to predict)", columns,
                         index=columns.index(table.label) if table.label in columns else 0, key="anchors:label",
                         help="The classifier predicts this column (a forest trained here learns it; your own model's "
                              "accuracy is measured on it); the anchors explain its predictions.")
    features = st.multiselect("Feature columns", columns, key="anchors:features",
                              default=[c for c in columns if table.roles.get(c) in ("feature", "categorical")],
                              help="Text columns are coded as categories; the rules name their values. "
                                   f"At most {flow.MAX_FEATURES} features.")
    with st.expander("Classifier and split settings" if source == "train" else "Split settings"):
        cols = st.columns(4) if source == "train" else [None, None, *st.columns(2)]
        n_trees, max_depth = 50, 12
        if source == "train":
            n_trees = cols[0].number_input("Trees", 1, flow.MAX_TREES, 50, step=10, key="anchors:trees",
                                           help=HELP["trees"])
            max_depth = cols[1].number_input("Max tree depth", 2, flow.MAX_DEPTH, 12, key="anchors:depth",
                                             help=HELP["depth"])
        model_seed = cols[2].number_input("Seed", 0, 2**31 - 1, 0, key="anchors:model_seed", help=HELP["model_seed"])
        split = ui_explain.split_form("anchors", split_column, test_share=0.25, max_train=50_000,
                                      columns=(cols[3], st))
    submitted = st.form_submit_button("Train classifier" if source == "train" else "Use this model", type="primary",
                                      icon=":material/model_training:", key="anchors:train",
                                      disabled=source == "own" and own is None)



def prepare(features: list[str]):
    data = flow.prepare(table, features, label, split_column if split.use_split else None, split.test_share,
                        split.max_train, int(model_seed))
    if own is not None:
        own.predictor.check(data.X_train)
    return data


data = ui_explain.prepare_or_explain(own, features, label, columns, prepare) if submitted else None
if data is not None:
    training.forget(EXPLAIN_JOB)  # an explanation belongs to the model it explained
    start_model(data, own, int(n_trees), int(max_depth), int(model_seed), table.name)

training.panel(MODEL_JOB, show_loss=False)
model_run: flow.ModelView | None = training.outcome(MODEL_JOB, model_view)

if model_run is not None:
    data = model_run.data
    ui_explain.model_metrics(model_run.accuracy, len(data.train_rows), len(data.test_rows), len(data.class_names))
    ui_explain.class_map_warning(model_run.class_map)
    st.caption(f"{model_run.description} on {model_run.table_name}: "
               f"{len(data.feature_names)} features ({len(data.categorical_names)} categorical), split by "
               f"{data.split}. " + " ".join(note[:1].upper() + note[1:] for note in data.notes))

    table_row, position, _, right = ui_explain.pick_prediction(
        "anchors", data.test_rows, model_run.position, model_run.test_proba, model_run.class_of_column,
        lambda at: data.class_names[int(data.y_test[at])])
    with right:
        row = flow.readable_rows(data.X_test[position], data.feature_names, data.categorical_names)
        st.dataframe(flow.readable_values(row), key="anchors:instance", hide_index=True,
                     height=min(36 * (len(row.columns) + 1) + 2, 560))

    n_features = len(data.feature_names)
    with st.form("anchors:search-form", border=False):
        cols = st.columns(5)
        threshold = cols[0].slider("Precision threshold", 0.50, 0.99, 0.95, 0.01, key="anchors:threshold",
                                   help=HELP["threshold"])
        beam_size = cols[1].number_input("Beam size", 1, flow.MAX_BEAM, 1, key="anchors:beam", help=HELP["beam_size"])
        coverage_samples = cols[2].number_input("Coverage samples", 100, flow.MAX_COVERAGE_SAMPLES,
                                                flow.MAX_COVERAGE_SAMPLES, step=500, key="anchors:coverage_samples",
                                                help=HELP["coverage_samples"])
        max_rules = cols[3].number_input("Max rules", 1, n_features, n_features, key="anchors:max_rules",
                                         help=HELP["max_rules"] + f" This model has {n_features} features.")
        explain_seed = cols[4].number_input("Seed", 0, 2**31 - 1, 0, key="anchors:explain_seed", help=HELP["seed"])
        explain = st.form_submit_button("Explain this prediction", type="primary", icon=":material/rule:",
                                        key="anchors:explain")
    if explain:
        search = explain_jobs.AnchorSearch(float(threshold), int(beam_size), int(coverage_samples), int(max_rules))
        training.start_job(EXPLAIN_JOB, flow.explain_label(table_row), explain_jobs.explain_anchor,
                           flow.explain_request(model_run, table_row, search, int(explain_seed)), kind="explain",
                           context=(model_run, table_row))
    ui_explain.explain_tail(EXPLAIN_JOB, lambda answer, ctx: flow.anchor_view(answer, *ctx),
                            lambda view: view.model is model_run, results)
elif training.current(MODEL_JOB) is None:
    st.info("Choose the label and feature columns and press **Train classifier**, or upload your own model. Bundled "
            "Adult works out of the box: it predicts whether income is above 50K from census answers.")
