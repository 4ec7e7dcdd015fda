"""Anchors without the page: data preparation, the runs a page shows, readable rows, sentences and figures.

Every row is named by its table row number (see :mod:`workflows.explain_data`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.explanation import Explanation
from engine.tabular import ClassificationData, classification_data
from jobs.explain import AnchorModel, AnchorRequest, AnchorSearch
from workflows.explain_data import check_feature_count, row_label, position_in_test

MAX_TREES = 200
MAX_DEPTH = 40
MAX_FEATURES = 60
MAX_BEAM = 5
MAX_COVERAGE_SAMPLES = 10_000
INLIER, OUTLIER = "#4C78A8", "#E45756"

HELP = {
    "threshold": "How reliable the rule must be: 0.95 means at least 95 % of the rows that satisfy it get the "
                 "same prediction (checked on sampled rows with 90 % confidence). Higher values give longer "
                 "rules.",
    "beam_size": f"How many candidate rules the search keeps at each step (at most {MAX_BEAM}): 1 is fastest; "
                 "more can find rules that apply to more rows, and takes longer.",
    "coverage_samples": "How many training rows are used to estimate coverage, the share of rows a rule applies "
                        f"to (at most {MAX_COVERAGE_SAMPLES:,}); more rows give a steadier figure.",
    "max_rules": "The most conditions the rule may have; the search stops earlier once the threshold is met.",
    "seed": "The search samples rows at random: the same seed gives the same rule.",
    "trees": f"Trees in the random forest (at most {MAX_TREES}); more trees predict more steadily and take "
             "longer to grow.",
    "depth": "How many questions each tree may ask before it decides; deeper trees fit more detail and make a "
             "larger model.",
    "model_seed": "Same seed, same split (and same forest).",
}


def prepare(table, features: list[str], label: str, split_column: str | None, test_share: float,
            max_train: int, seed: int) -> ClassificationData:
    """Encode and split the table for a classifier (text columns as category codes)."""
    check_feature_count(features, MAX_FEATURES)
    return classification_data(table.frame, features, label, categorical=table.columns_with_role("categorical"),
                               split_column=split_column, test_size=float(test_share), seed=int(seed),
                               max_train_rows=int(max_train))


@dataclass
class ModelView:
    """A classifier (a forest trained here or an uploaded model) and its test-split predictions."""

    data: ClassificationData
    model: AnchorModel  # how it travels to an explanation job
    column_classes: list[str]  # the class name of each column of test_proba
    test_proba: np.ndarray
    accuracy: float | None  # None: the model's classes are not values of the label column
    table_name: str
    description: str  # what the classifier is, for the caption
    class_map: object = None  # an uploaded model: ui.own_model.ClassMap of its classes against the label's values

    def class_of_column(self, column: int) -> str:
        """Class name of a column of the model's probabilities (a forest only knows classes seen in training)."""
        return self.column_classes[int(column)]

    def position(self, table_row: int) -> int:
        return position_in_test(self.data.test_rows, table_row)


def forest_view(answer, data: ClassificationData, model: AnchorModel, table_name: str) -> ModelView:
    """The view of :func:`jobs.explain.train_forest`'s answer."""
    accuracy = float(np.mean(answer.classes[answer.test_proba.argmax(axis=1)] == data.y_test))
    return ModelView(data, model, [data.class_names[int(c)] for c in answer.classes], answer.test_proba, accuracy,
                     table_name, f"Random forest of {answer.n_built} trees")


@dataclass
class AnchorView:
    """One explanation of one test row, with what the page shows beside it."""

    model: ModelView
    table_row: int
    explanation: Explanation
    held_out: dict
    different_predictions: list[list[str]]  # per step: the model's class for each covered_false example


def explain_request(view: ModelView, table_row: int, search: AnchorSearch, seed: int) -> AnchorRequest:
    data = view.data
    return AnchorRequest(view.model, list(data.feature_names), dict(data.categorical_names), data.X_train,
                         data.X_test, view.test_proba, view.position(table_row), search, int(seed))


def anchor_view(answer, view: ModelView, table_row: int) -> AnchorView:
    """The view of :func:`jobs.explain.explain_anchor`'s answer; its JSON names the table row it explains."""
    different = [[view.class_of_column(c) for c in columns] for columns in answer.different_columns]
    exp = answer.explanation
    context = {"dataset": view.table_name, "row": int(table_row), "feature_names": list(view.data.feature_names),
               "class_names": list(view.column_classes)}
    explanation = Explanation(meta={**exp.meta, "lantern": context}, data=exp.data)
    return AnchorView(view, int(table_row), explanation, answer.held_out, different)


# ------------------------------------------------------------------------------------------------ text


def readable_rows(X: np.ndarray, feature_names: list[str], categorical_names: dict) -> pd.DataFrame:
    """Rows of category codes and numbers as a DataFrame of category names and numbers (missing: None).

    Examples
    --------
    >>> readable_rows(np.array([[1.0, 25.0]]), ["Sex", "Age"], {0: ["F", "M"]}).to_dict("records")
    [{'Sex': 'M', 'Age': 25.0}]
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    columns = {}
    for j, name in enumerate(feature_names):
        values = X[:, j]
        if j in categorical_names:
            labels = list(categorical_names[j])
            columns[name] = [None if np.isnan(v) else labels[int(v)] if 0 <= v < len(labels) and v == int(v)
                             else f"{v:g}" for v in values]
        else:
            columns[name] = [None if np.isnan(v) else float(v) for v in values]
    return pd.DataFrame(columns)


def readable_values(frame: pd.DataFrame) -> pd.DataFrame:
    """One row of :func:`readable_rows` as a feature / value table with uniform text values."""
    values = [("(missing)" if v is None else f"{v:g}" if isinstance(v, float) else str(v)) for v in frame.iloc[0]]
    return pd.DataFrame({"feature": frame.columns, "value": values})


def markdown_text(text: str) -> str:
    """``text`` with Markdown punctuation escaped, so category names show as written."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>$~:=])", r"\\\1", str(text))


def anchor_markdown(view: AnchorView) -> str:
    """The anchor as an IF … THEN sentence of badges."""
    raw = view.explanation.raw
    predicted = view.model.class_of_column(np.asarray(raw["prediction"]).ravel()[0])
    chips = " **AND** ".join(f":blue-badge[{markdown_text(rule)}]" for rule in view.explanation.anchor)
    return f"**IF** {chips} **THEN** the model predicts :green-badge[{markdown_text(predicted)}]"


def predicted_class(view: AnchorView) -> str:
    return view.model.class_of_column(np.asarray(view.explanation.raw["prediction"]).ravel()[0])


def example_columns(view: AnchorView, step: int) -> list[str]:
    """The anchor's features (up to ``step``) first, so the reader sees the conditions hold, then the others."""
    names = view.model.data.feature_names
    in_anchor = list(dict.fromkeys(names[j] for j in view.explanation.raw["feature"][:step]))
    return in_anchor + [n for n in names if n not in in_anchor]


def steps_figure(explanation: Explanation, threshold: float) -> go.Figure:
    """Precision and coverage before any rule and after each added rule."""
    raw = explanation.raw
    labels = ["(no rule)"] + [f"+ {name}" for name in raw["step_names"]]
    precision = [raw["all_precision"]] + list(raw["precision"])
    coverage = [1.0] + list(raw["coverage"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=labels, y=precision, mode="lines+markers", name="precision",
                             line=dict(color=INLIER)))
    fig.add_trace(go.Scatter(x=labels, y=coverage, mode="lines+markers", name="coverage",
                             line=dict(color=OUTLIER)))
    fig.add_hline(y=threshold, line_dash="dash", line_color="#888", annotation_text=f"threshold {threshold:g}")
    fig.update_layout(title="Precision and coverage as each rule is added", xaxis_title="anchor after step",
                      yaxis=dict(title="share", range=[0, 1.05]), margin=dict(l=10, r=10, t=40, b=10),
                      height=340, legend=dict(orientation="h", y=-0.35))
    return fig


def explain_label(table_row: int) -> str:
    return f"Explain {row_label(table_row)}"


def json_name(table_row: int) -> str:
    return f"anchor_row_{int(table_row)}.json"
