"""The active dataset of a session, bundled datasets, and column pickers for the workflow pages."""

from __future__ import annotations

import threading

import pandas as pd
import streamlit as st

from engine.datasets import get_dataset, list_datasets, load_dataset
from engine.errors import DataError
from engine.ingest import Table, read_csv_bytes, table_from_frame
from ui import session
from ui.settings import SETTINGS

DEFAULT_DATASET = "shuttle"
_ACTIVE = "active_table"
_ORIGIN = "active_origin"
session.persist(_ACTIVE, _ORIGIN)  # a reload within the session TTL keeps the uploaded table
_UPLOADER = "upload"


@st.cache_resource(max_entries=16, show_spinner="Loading bundled dataset…")
def bundled_table(key: str) -> Table:
    """The bundled dataset ``key`` as a Table, shared read-only by all sessions (never mutate it)."""
    info = get_dataset(key)
    return table_from_frame(load_dataset(key), name=info.title, roles=dict(info.roles))


def active_table() -> Table:
    """This session's active dataset; the default bundled dataset until the user picks another."""
    if _ACTIVE not in st.session_state:
        set_active(bundled_table(DEFAULT_DATASET), origin=f"bundled:{DEFAULT_DATASET}")
    return st.session_state[_ACTIVE]


def active_origin() -> str:
    active_table()
    return st.session_state[_ORIGIN]


def set_active(table: Table, origin: str) -> None:
    """Make ``table`` the session's active dataset (``origin`` is 'upload' or 'bundled:<key>')."""
    st.session_state[_ACTIVE] = table
    st.session_state[_ORIGIN] = origin


def load_upload(data: bytes, name: str) -> Table:
    """Parse an upload within the demo's limits; raises DataError with a user-facing message."""
    return read_csv_bytes(data, name=name, limits=SETTINGS.ingest_limits)


_SIDEBAR = threading.local()


def sidebar_dataset() -> None:
    """The sidebar's "Active dataset" line: the session's active dataset until the page says which one it uses.

    Called by ``app.py`` inside ``st.sidebar`` before the page runs; :func:`show_page_dataset` (called by
    :func:`choose_table`) then replaces it with the dataset the current page works on.
    """
    _SIDEBAR.slot = st.empty()
    _fill_sidebar(active_table(), "Active dataset")


def _fill_sidebar(table: Table, caption: str) -> None:
    slot = getattr(_SIDEBAR, "slot", None)
    if slot is None:
        return
    with slot.container():
        st.caption(caption)
        st.markdown(f"**{table.name}**  \n{len(table.frame):,} rows × {len(table.frame.columns):,} columns")


def show_page_dataset(table: Table) -> None:
    """Say in the sidebar that the current page uses ``table`` (no-op outside ``app.py``, e.g. in page tests)."""
    _fill_sidebar(table, "Dataset on this page")


def csv_uploader() -> None:
    """The CSV uploader of the Data page: a good file becomes the active dataset, a bad one is refused.

    After a refusal the uploader is drawn afresh (a new widget key), so it no longer shows the refused file's name
    as if it were in use; the error says which file was refused and why.
    """
    generation = st.session_state.get("upload_generation", 0)
    key = _UPLOADER if generation == 0 else f"{_UPLOADER}:{generation}"
    upload = st.file_uploader("CSV file", type=["csv", "txt", "tsv"], key=key)
    if upload is not None and st.session_state.get("upload_seen") != upload.file_id:
        st.session_state["upload_seen"] = upload.file_id
        try:
            table = load_upload(upload.getvalue(), upload.name)
        except DataError as exc:
            st.session_state["upload_error"] = f"{upload.name}: {exc}"
            st.session_state["upload_generation"] = generation + 1  # a fresh, empty uploader
            st.rerun()
        else:
            st.session_state.pop("upload_error", None)
            set_active(table, origin="upload")
            st.rerun()  # the sidebar was drawn before this page ran; redraw it with the new dataset
    if st.session_state.get("upload_error"):
        st.error(f"Could not use {st.session_state['upload_error']}", icon=":material/error:")
        st.caption("Your previous active dataset is still in use.")


def choose_table(workflow: str, *, key: str, kinds: tuple[str, ...] | None = None, default: str | None = None,
                 needs_label: bool = False) -> tuple[Table, str]:
    """A select box of the datasets suited to ``workflow``: the bundled ones and the active one.

    It starts on the user's upload (when it has a label column, if ``needs_label``), else on the
    bundled dataset ``default`` ('<key>' or 'bundled:<key>'; or the active dataset when it suits the workflow, or the first
    bundled one made for it). Returns the chosen table and its origin ('upload' or 'bundled:<key>').
    """
    bundled = [d for d in list_datasets() if workflow in d.suggested_for and (kinds is None or d.kind in kinds)]
    options = [f"bundled:{d.key}" for d in bundled]
    origin = active_origin()
    # Start on the user's own upload, or on the active dataset when it suits this workflow;
    # otherwise on the first bundled dataset made for it.
    if origin == "upload":
        prefer_active = not needs_label or active_table().label is not None
    else:
        prefer_active = origin in options and default is None
    if origin not in options:
        options.insert(0, origin)
    labels = {f"bundled:{d.key}": f"{d.title} (bundled)" for d in bundled}
    labels[origin] = labels.get(origin, f"{active_table().name} (your active dataset)")
    if default is not None and not default.startswith("bundled:"):
        default = f"bundled:{default}"
    fallback = default if default in options else (
        f"bundled:{bundled[0].key}" if bundled else origin)
    index = options.index(origin if prefer_active else fallback)
    choice = st.selectbox("Dataset", options, index=index, format_func=labels.get, key=key,
                          help="Upload your own CSV on the Data page; it then appears here.")
    table = active_table() if choice == origin else bundled_table(choice.split(":", 1)[1])
    show_page_dataset(table)
    return table, choice


def numeric_columns(table: Table) -> list[str]:
    return [c for c in table.frame.columns if pd.api.types.is_numeric_dtype(table.frame[c])
            and not pd.api.types.is_bool_dtype(table.frame[c])]


def text_columns(table: Table) -> list[str]:
    """Columns that are not numeric (text, few-valued), except the label and time columns and empty ones."""
    skip = {table.label, table.time}
    return [c for c in table.frame.columns if c not in skip and not table.frame[c].isna().all()
            and not (pd.api.types.is_numeric_dtype(table.frame[c]) and not pd.api.types.is_bool_dtype(table.frame[c]))
            and not pd.api.types.is_datetime64_any_dtype(table.frame[c])]


def feature_picker(table: Table, *, key: str, label: str = "Feature columns", categorical: bool = False) -> list[str]:
    """Multiselect of numeric columns (and text columns with ``categorical``), defaulting to role 'feature'."""
    options = numeric_columns(table) + (text_columns(table) if categorical else [])
    default = [c for c in table.columns_with_role("feature") if c in options]
    help_text = ("Numeric columns, and text columns (one-hot encoded: the 30 most frequent values of each, the "
                 "rest as 'other'), fed to the model. Change roles on the Data page." if categorical else
                 "Numeric columns fed to the model. Change roles on the Data page.")
    return st.multiselect(label, options, default=default, key=key, help=help_text)


def label_picker(table: Table, *, key: str, label: str = "Label column (optional)") -> str | None:
    """Select box of a ground-truth column; '(none)' by default unless the table has a label role."""
    options = ["(none)"] + list(table.frame.columns)
    default = options.index(table.label) if table.label in options else 0
    choice = st.selectbox(label, options, index=default, key=key,
                          help="With a label column Lantern reports precision, recall, F1, ROC and PR.")
    return None if choice == "(none)" else choice


def show_data_error(exc: DataError, what: str = "The data") -> None:
    st.error(f"{what} cannot be used: {exc}", icon=":material/error:")


def missing_policy(key: str) -> str:
    """How to treat rows with missing or infinite values in the selected columns."""
    labels = {"drop": "drop those rows", "median": "fill with the column median", "error": "stop and tell me"}
    return st.radio("Rows with missing values", list(labels), format_func=labels.get, key=key, horizontal=True)
