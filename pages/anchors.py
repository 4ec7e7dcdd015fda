"""Anchors: train a classifier on a table, then explain one of its predictions with an if-then rule."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine.errors import DataError, ModelError
from engine.explainers import AnchorTabular
from engine.explanation import Explanation
from engine.tabular import ClassificationData, classification_data, find_split_column, train_forest
from ui import charts, downloads, own_model, training
from ui import data as ui_data
from ui.settings import SETTINGS

MODEL_JOB = "anchors-model"
EXPLAIN_JOB = "anchors-explain"
DEFAULT_DATASET = "bundled:adult"
MAX_TREES = 200
MAX_DEPTH = 40
MAX_FEATURES = 60
MAX_BEAM = 5
MAX_COVERAGE_SAMPLES = 10_000


@dataclass
class ModelRun:
    """A classifier (a forest trained here or an uploaded model), its test-split predictions and an explainer
    fitted on its training rows."""

    data: ClassificationData
    predict_proba: object  # rows -> class probabilities
    column_classes: list[str]  # the class name of each column of predict_proba
    explainer: AnchorTabular
    test_proba: np.ndarray
    accuracy: float | None  # None: the model's classes are not values of the label column
    table_name: str
    description: str  # what the classifier is, for the caption
    class_map: own_model.ClassMap | None = None  # an uploaded model: its classes against the label's values

    def class_of_column(self, column: int) -> str:
        """Class name of a column of ``predict_proba`` (a forest only knows classes seen in training)."""
        return self.column_classes[int(column)]

    def predicted_classes(self, rows: np.ndarray) -> list[str]:
        return [self.column_classes[int(c)] for c in np.asarray(self.predict_proba(rows)).argmax(axis=1)]


@dataclass
class AnchorRun:
    """One explanation of one test row, with what the page shows beside it."""

    model_run: ModelRun
    position: int  # in the test split
    explanation: Explanation
    held_out: dict
    different_predictions: list[list[str]]  # per step: the model's class for each covered_false example


def fit_model(job, data: ClassificationData, n_trees: int, max_depth: int, seed: int, table_name: str) -> ModelRun:
    job.set_stage(f"growing {n_trees} trees", 0.0)
    model = train_forest(
        data.X_train, data.y_train, n_trees=n_trees, max_depth=max_depth, seed=seed,
        progress=lambda e: job.report({**e, "message": f"{e['trees_built']}/{e['n_trees']} trees"}),
        cancel=job.cancel, time_budget=SETTINGS.job_time_budget_s,
    )
    job.set_stage("predicting the test split", 1.0)
    test_proba = model.predict_proba(data.X_test)
    accuracy = float(np.mean(model.classes_[test_proba.argmax(axis=1)] == data.y_test))
    job.set_stage("indexing the training rows for the explainer", 1.0)
    explainer = AnchorTabular(model.predict_proba, data.feature_names, data.categorical_names, seed=0).fit(data.X_train)
    built = len(model.estimators_)
    job.set_stage(f"{built} trees, test accuracy {accuracy:.3f}"
                  + (" (stopped at the time budget)" if built < n_trees else ""), 1.0)
    column_classes = [data.class_names[int(c)] for c in model.classes_]
    return ModelRun(data, model.predict_proba, column_classes, explainer, test_proba, accuracy, table_name,
                    f"Random forest of {built} trees")


def use_own_model(job, data: ClassificationData, model: own_model.OwnModel, table_name: str) -> ModelRun:
    """An uploaded model on the chosen columns: its test-split predictions, accuracy and explainer."""
    predictor = model.predictor
    job.set_stage("predicting the test split with your model", 0.0)
    test_proba = own_model.predict_in_batches(predictor, data.X_test)
    class_map = own_model.ClassMap.between(model.class_names, data.class_names)
    accuracy = own_model.accuracy(test_proba, class_map.labels_for_model(data.y_test))
    job.set_stage("indexing the training rows for the explainer", 1.0)
    explainer = AnchorTabular(predictor, data.feature_names, data.categorical_names, seed=0).fit(data.X_train)
    job.set_stage("your model is ready" + ("" if accuracy is None else f", test accuracy {accuracy:.3f}"), 1.0)
    return ModelRun(data, predictor, class_map.shown_names, explainer, test_proba, accuracy, table_name,
                    own_model.describe(model), class_map)


def explain_row(job, run: ModelRun, position: int, search: dict, seed: int) -> AnchorRun:
    explainer = run.explainer
    explainer.seed = seed  # every explanation draws from a fresh generator seeded with this
    most_rules = search["max_anchor_size"]

    def report(event: dict) -> None:
        rule = " AND ".join(event["anchor"]) or "(no rule)"
        job.report({**event, "fraction": min(event["size"] / most_rules, 1.0),
                    "message": f"{event['size']} rule(s): {rule[:120]} · precision {event['precision']:.3f}"})

    job.set_stage("sampling rows that satisfy candidate rules", 0.0)
    explanation = explainer.explain(run.data.X_test[position], **search, progress=report, cancel=job.cancel)
    job.set_stage("checking the anchor on the test split", 1.0)
    held_out = explainer.anchor_precision_on(run.data.X_test, explanation, predictions=run.test_proba)
    different = []
    for examples in explanation.raw["examples"]:
        rows = examples["covered_false"]
        different.append(run.predicted_classes(rows) if len(rows) else [])
    status = "certified" if explanation.raw["success"] else "not certified"
    job.set_stage(f"{len(explanation.anchor)} rule(s), precision {explanation.precision:.3f}, {status}", 1.0)
    return AnchorRun(run, position, explanation, held_out, different)


def markdown_text(text: str) -> str:
    """``text`` with Markdown punctuation escaped, so category names show as written."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>$~:=])", r"\\\1", str(text))


def readable_values(frame: pd.DataFrame) -> pd.DataFrame:
    """One row of ``readable_rows`` as a feature / value table with uniform text values."""
    values = [("(missing)" if v is None else f"{v:g}" if isinstance(v, float) else str(v)) for v in frame.iloc[0]]
    return pd.DataFrame({"feature": frame.columns, "value": values})


def steps_figure(explanation: Explanation, threshold: float) -> go.Figure:
    """Precision and coverage before any rule and after each added rule."""
    raw = explanation.raw
    labels = ["(no rule)"] + [f"+ {name}" for name in raw["step_names"]]
    precision = [raw["all_precision"]] + list(raw["precision"])
    coverage = [1.0] + list(raw["coverage"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=labels, y=precision, mode="lines+markers", name="precision",
                             line=dict(color=charts.INLIER)))
    fig.add_trace(go.Scatter(x=labels, y=coverage, mode="lines+markers", name="coverage",
                             line=dict(color=charts.OUTLIER)))
    charts.threshold_line(fig, threshold, axis="y", label=f"threshold {threshold:g}")
    fig.update_layout(title="Precision and coverage as each rule is added", xaxis_title="anchor after step",
                      yaxis=dict(title="share", range=[0, 1.05]), margin=dict(l=10, r=10, t=40, b=10),
                      height=340, legend=dict(orientation="h", y=-0.35))
    return fig


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
dataset_id = f"{origin}|{table.name}|{'|'.join(columns)}"
if st.session_state.get("anchors:dataset_id") != dataset_id:
    st.session_state["anchors:dataset_id"] = dataset_id
    for key in ("anchors:label", "anchors:features"):
        st.session_state.pop(key, None)
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
    default_features = [c for c in columns if table.roles.get(c) in ("feature", "categorical")]
    features = st.multiselect("Feature columns", columns, default=default_features, key="anchors:features",
                              help="Text columns are coded as categories; the rules name their values. "
                                   f"At most {MAX_FEATURES} features.")
    with st.expander("Classifier and split settings" if source == "train" else "Split settings"):
        cols = st.columns(4) if source == "train" else [None, None, *st.columns(2)]
        n_trees, max_depth = 50, 12
        if source == "train":
            n_trees = cols[0].number_input("Trees", 1, MAX_TREES, 50, step=10, key="anchors:trees",
                                           help=f"Trees in the random forest (at most {MAX_TREES}).")
            max_depth = cols[1].number_input("Max tree depth", 2, MAX_DEPTH, 12, key="anchors:depth",
                                             help="Deeper trees fit more detail and make a larger model.")
        model_seed = cols[2].number_input("Seed", 0, 2**31 - 1, 0, key="anchors:model_seed",
                                          help="Same seed, same split (and same forest).")
        max_train = cols[3].number_input("Train on at most this many rows", 100, SETTINGS.max_train_rows,
                                         min(50_000, SETTINGS.max_train_rows), step=1000, key="anchors:max_train",
                                         help=f"A random sample beyond that (at most {SETTINGS.max_train_rows:,}).")
        use_split = False
        if split_column is not None:
            use_split = st.checkbox(f"Use the `{split_column}` column for the train / test split", value=True,
                                    key="anchors:use_split")
        test_share = st.slider("Test share of a random split", 0.1, 0.5, 0.25, 0.05, key="anchors:test_share",
                               help="Used when there is no train / test column. The split is stratified by class.")
    submitted = st.form_submit_button("Train classifier" if source == "train" else "Use this model", type="primary",
                                      icon=":material/model_training:", key="anchors:train",
                                      disabled=source == "own" and own is None)

if submitted:
    if label in features:
        features = [c for c in features if c != label]
        st.info(f"`{label}` is the label, so it was left out of the features.")
    try:
        if own is not None:
            features = own_model.input_columns(own.predictor.feature_names, own.predictor.n_features, features,
                                               columns, label)
        if len(features) > MAX_FEATURES:
            raise DataError(f"{len(features)} feature columns are selected; at most {MAX_FEATURES} are allowed. "
                            "Leave some out.")
        data = classification_data(
            table.frame, features, label, categorical=table.columns_with_role("categorical"),
            split_column=split_column if use_split else None, test_size=float(test_share), seed=int(model_seed),
            max_train_rows=int(max_train),
        )
        if own is not None:
            own.predictor.check(data.X_train)
    except DataError as exc:
        ui_data.show_data_error(exc)
    except ModelError as exc:
        st.error(f"**{own.file_name}** does not fit these columns: {exc}", icon=":material/error:")
    else:
        training.forget(EXPLAIN_JOB)  # an explanation belongs to the model it explained
        if own is not None:
            training.start(MODEL_JOB, f"Use {own.file_name} on {table.name}", lambda job: use_own_model(
                job, data, own, table.name))
        else:
            training.start(MODEL_JOB, f"Train random forest on {table.name}", lambda job: fit_model(
                job, data, int(n_trees), int(max_depth), int(model_seed), table.name))

training.panel(MODEL_JOB, show_loss=False)
model_run: ModelRun | None = training.result(MODEL_JOB)


@st.fragment
def results(anchor_run: AnchorRun) -> None:
    run, exp = anchor_run.model_run, anchor_run.explanation
    raw, threshold = exp.raw, exp.meta["params"]["threshold"]
    predicted = run.class_of_column(np.asarray(raw["prediction"]).ravel()[0])
    table_row = int(run.data.test_rows[anchor_run.position])
    st.subheader(f"Anchor for test row {anchor_run.position} (table row {table_row})")

    if exp.anchor:
        chips = " **AND** ".join(f":blue-badge[{markdown_text(rule)}]" for rule in exp.anchor)
        st.markdown(f"**IF** {chips} **THEN** the model predicts :green-badge[{markdown_text(predicted)}]")
    else:
        st.info(f"No condition is needed: the model predicts **{markdown_text(predicted)}** for "
                f"{raw['all_precision']:.1%} of the sampled rows, which already meets the threshold "
                f"{threshold:g}.", icon=":material/info:")
    if raw["success"]:
        st.success(f"Certified: {raw['message']}", icon=":material/verified:")
    else:
        st.warning(f"Not certified: {raw['message']} On this page: lower the precision threshold, train on more "
                   "rows, or try another seed.", icon=":material/warning:")

    held = anchor_run.held_out
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
        st.plotly_chart(steps_figure(exp, threshold), key="anchors:steps")
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
        # The anchor's features first, so the reader sees the conditions hold.
        names = run.data.feature_names
        in_anchor = list(dict.fromkeys(names[j] for j in raw["feature"][:step]))
        order = in_anchor + [n for n in names if n not in in_anchor]
        same_tab, other_tab = st.tabs([f"Same prediction ({predicted}): {len(same)}",
                                       f"Different prediction: {len(other)}"])
        with same_tab:
            if len(same):
                st.dataframe(run.explainer.readable_rows(same)[order], key="anchors:same", height=250)
            else:
                st.caption("No sampled row with this prediction.")
        with other_tab:
            if len(other):
                frame = run.explainer.readable_rows(other)[order]
                frame.insert(0, "predicted", anchor_run.different_predictions[step - 1])
                st.dataframe(frame, key="anchors:other", height=250)
            else:
                st.caption("None: every sampled row satisfying the anchor got the same prediction.")

    st.markdown("**Export**")
    downloads.json_button("Explanation JSON", exp.to_json, f"anchor_test_row_{anchor_run.position}.json",
                          key="anchors:json")


if model_run is not None:
    data = model_run.data
    cols = st.columns(4)
    cols[0].metric("Test accuracy", "—" if model_run.accuracy is None else f"{model_run.accuracy:.3f}",
                   help=f"Share of the {len(data.test_rows):,} test rows the model classifies correctly.")
    cols[1].metric("Training rows", f"{len(data.train_rows):,}")
    cols[2].metric("Test rows", f"{len(data.test_rows):,}")
    cols[3].metric("Classes", f"{len(data.class_names)}")
    if model_run.class_map is not None and model_run.class_map.message():
        st.warning(model_run.class_map.message(), icon=":material/warning:")
    st.caption(f"{model_run.description} on {model_run.table_name}: "
               f"{len(data.feature_names)} features ({len(data.categorical_names)} categorical), split by "
               f"{data.split}. " + " ".join(note[:1].upper() + note[1:] for note in data.notes))

    st.subheader("2 · Pick a prediction to explain")
    n_test = len(data.test_rows)
    position = int(st.number_input(f"Test row (0 – {n_test - 1:,})", 0, n_test - 1, 0, key="anchors:row",
                                   help="Row number in the test split; the explainer samples from training rows."))
    proba = model_run.test_proba[position]
    left, right = st.columns([1, 2])
    with left:
        st.metric("Model predicts", model_run.class_of_column(proba.argmax()),
                  help="The model's class for this row.")
        st.metric("Probability", f"{proba.max():.3f}")
        st.metric("True class", data.class_names[int(data.y_test[position])])
        st.caption(f"Table row {int(data.test_rows[position])}")
    with right:
        row = model_run.explainer.readable_rows(data.X_test[position])
        st.dataframe(readable_values(row), key="anchors:instance", hide_index=True,
                     height=min(36 * (len(row.columns) + 1) + 2, 560))

    n_features = len(data.feature_names)
    with st.form("anchors:search-form", border=False):
        cols = st.columns(5)
        threshold = cols[0].slider("Precision threshold", 0.50, 0.99, 0.95, 0.01, key="anchors:threshold",
                                   help="The anchor must reach this precision (with 90 % confidence).")
        beam_size = cols[1].number_input("Beam size", 1, MAX_BEAM, 1, key="anchors:beam",
                                         help=f"Candidate rules kept at each step (at most {MAX_BEAM}); "
                                              "wider searches longer for more coverage.")
        coverage_samples = cols[2].number_input("Coverage samples", 100, MAX_COVERAGE_SAMPLES, MAX_COVERAGE_SAMPLES,
                                                step=500, key="anchors:coverage_samples",
                                                help="Training rows on which coverage is estimated "
                                                     f"(at most {MAX_COVERAGE_SAMPLES:,}).")
        max_rules = cols[3].number_input("Max rules", 1, n_features, n_features, key="anchors:max_rules",
                                         help=f"Most conditions in the anchor (this model has {n_features} features).")
        explain_seed = cols[4].number_input("Seed", 0, 2**31 - 1, 0, key="anchors:explain_seed",
                                            help="Same seed, same anchor.")
        explain = st.form_submit_button("Explain this prediction", type="primary", icon=":material/rule:",
                                        key="anchors:explain")
    if explain:
        search = {"threshold": float(threshold), "beam_size": int(beam_size),
                  "coverage_samples": int(coverage_samples), "max_anchor_size": int(max_rules)}
        training.start(EXPLAIN_JOB, f"Explain test row {position}", lambda job: explain_row(
            job, model_run, position, search, int(explain_seed)), kind="explain")

    explain_job = training.panel(EXPLAIN_JOB, show_loss=False)
    anchor_run: AnchorRun | None = training.result(EXPLAIN_JOB)
    if anchor_run is not None and anchor_run.model_run is model_run:
        results(anchor_run)
    elif explain_job is None:
        st.info("Pick a test row and press **Explain this prediction**.")
elif training.current(MODEL_JOB) is None:
    st.info("Choose the label and feature columns and press **Train classifier**, or upload your own model. Bundled "
            "Adult works out of the box: it predicts whether income is above 50K from census answers.")
