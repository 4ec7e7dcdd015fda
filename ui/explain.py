"""Widgets the two explanation pages (CEM, Anchors) share: the split form, the row picker, the explain tail.

Rows are named by their table row number only (see :mod:`workflows.explain_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from engine.errors import DataError, ModelError
from ui import data as ui_data
from ui import own_model, training
from ui.settings import SETTINGS
from workflows.explain_data import row_label, without_label

HELP = {
    "test_share": "The share of rows held back to test the classifier and to pick explanations from; the split "
                  "keeps each class's share. Used when the table has no train / test column.",
    "max_train": "Training uses a random sample of at most this many rows, to keep training quick "
                 f"(at most {SETTINGS.max_train_rows:,} on this server).",
    "row": "The rows held back for testing, by their row number in the table (as on the Data page and in the "
           "exports). Type to search.",
}


@dataclass
class SplitSettings:
    test_share: float
    max_train: int
    use_split: bool  # use the table's own train / test column


def reset_on_change(prefix: str, identity: str, keys: Sequence[str]) -> None:
    """Drop the widget values ``keys`` when ``identity`` (e.g. the dataset) differs from the last run's."""
    state_key = f"{prefix}:identity"
    if st.session_state.get(state_key) != identity:
        st.session_state[state_key] = identity
        for key in keys:
            st.session_state.pop(key, None)


def split_form(prefix: str, split_column: str | None, *, test_share: float, max_train: int,
               columns: Sequence[Any] | None = None) -> SplitSettings:
    """The test share, the training-row cap and (when the table has one) its own split column.

    ``columns`` are two places for the cap and the share (default: a row of two).
    """
    first, second = columns if columns is not None else st.columns(2)
    rows = first.number_input("Train on at most this many rows", 100, SETTINGS.max_train_rows,
                              min(max_train, SETTINGS.max_train_rows), step=1000, key=f"{prefix}:max_train",
                              help=HELP["max_train"])
    share = second.slider("Test share of a random split", 0.1, 0.5, test_share, 0.05, key=f"{prefix}:test_share",
                          help=HELP["test_share"])
    use_split = False
    if split_column is not None:
        use_split = st.checkbox(f"Use the `{split_column}` column for the train / test split", value=True,
                                key=f"{prefix}:use_split")
    return SplitSettings(float(share), int(rows), use_split)


def drop_label(features: list[str], label: str) -> list[str]:
    """The features without the label column, saying so when it was chosen."""
    kept, dropped = without_label(features, label)
    if dropped:
        st.info(f"`{label}` is the label, so it was left out of the features.")
    return kept


def prepare_or_explain(own: own_model.OwnModel | None, features: list[str], label: str, columns: Sequence[str],
                       prepare: Callable[[list[str]], Any]) -> Any:
    """``prepare(features)`` for the chosen features (the uploaded model's inputs when there is one), or None
    after a message saying what does not fit and how to fix it."""
    features = drop_label(features, label)
    try:
        if own is not None:
            features = own_model.input_columns(own.predictor.feature_names, own.predictor.n_features, features,
                                               columns, label)
        return prepare(features)
    except DataError as exc:
        ui_data.show_data_error(exc)
    except ModelError as exc:
        st.error(f"**{own.file_name}** does not fit these columns: {exc}", icon=":material/error:")
    return None


def model_metrics(accuracy: float | None, n_train: int, n_test: int, n_classes: int, columns: int = 4) -> list:
    """Test accuracy, training and test rows, classes; returns the metric columns (extra ones for the page)."""
    cols = st.columns(columns)
    cols[0].metric("Test accuracy", "—" if accuracy is None else f"{accuracy:.3f}",
                   help=f"Share of the {n_test:,} test rows the classifier gets right.")
    cols[1].metric("Training rows", f"{n_train:,}")
    cols[2].metric("Test rows", f"{n_test:,}")
    cols[3].metric("Classes", f"{n_classes}")
    return cols


def pick_row(prefix: str, test_rows: np.ndarray) -> int:
    """A select box of the test rows by table row number; returns the chosen table row."""
    options = [int(r) for r in test_rows]
    if st.session_state.get(f"{prefix}:row") not in options:  # a row of a previous split
        st.session_state.pop(f"{prefix}:row", None)
    return int(st.selectbox(f"Table row to explain ({len(options):,} test rows)", options, index=0,
                            key=f"{prefix}:row", format_func=lambda r: row_label(r).capitalize(),
                            help=HELP["row"]))


def prediction_summary(predicted: str, probability: float, true_class: str) -> None:
    st.metric("Model predicts", predicted, help="The classifier's class for this row.")
    st.metric("Probability", f"{probability:.3f}")
    st.metric("True class", true_class)


def class_map_warning(class_map) -> None:
    """The warning of an uploaded model whose outputs were matched to the label's classes by a guess, if any."""
    if class_map is not None and class_map.message():
        st.warning(class_map.message(), icon=":material/warning:")


def pick_prediction(prefix: str, test_rows: np.ndarray, position_of: Callable[[int], int], test_proba: np.ndarray,
                    class_of: Callable[[int], str], true_class_at: Callable[[int], str]):
    """Step 2 of an explainer page: the test row picker, then the model's prediction for the chosen row.

    ``position_of`` maps a table row to its position among the test rows, ``class_of`` a column of ``test_proba``
    to its class name and ``true_class_at`` a position to the row's true class. Returns the table row, its
    position, its class probabilities and the column right of the prediction, for the page to show the row in.
    """
    st.subheader("2 · Pick a prediction to explain")
    table_row = pick_row(prefix, test_rows)
    position = position_of(table_row)
    proba = test_proba[position]
    left, right = st.columns([1, 2])
    with left:
        prediction_summary(class_of(int(proba.argmax())), float(proba.max()), true_class_at(position))
    return table_row, position, proba, right


def explain_tail(key: str, build: Callable[[Any, Any], Any], belongs: Callable[[Any], bool],
                 show: Callable[[Any], None]) -> None:
    """The explanation job's panel, then its result when it belongs to the model on screen, else a hint."""
    job = training.panel(key, show_loss=False)
    view = training.outcome(key, build)
    if view is not None and belongs(view):
        show(view)
    elif job is None:
        st.info("Pick a table row and press **Explain this prediction**.")
