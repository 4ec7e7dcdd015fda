"""Form values that survive a page switch (and, through :mod:`ui.session`, a reload).

Streamlit forgets the value of a widget that a run does not draw: after a visit to another page, every input of
the page comes back at its default (epochs 5 becomes 10 again). :func:`keep_values`, called once per run by
``app.py`` before the page runs, copies the values of the keyed input widgets drawn in the previous run into a
plain session-state dict, and puts a value back under its key when its widget is no longer drawn, so the widget
finds it when its page draws it again. Pages need nothing for this: any widget with a ``key`` keeps its value.

Only plain input values are kept (numbers, text, choices among plain options, lists of them); buttons, uploads,
data editors and chart selections are left to Streamlit. A kept value that no longer fits the widget (an option
that is gone, a number out of range) is reset to the widget's default by Streamlit itself.
"""

from __future__ import annotations

import datetime
from typing import Any

import streamlit as st

from ui import session

VALUES = "forms::values"  # the kept values, by widget key (saved for a reload by ui.session)
session.persist(VALUES)
_KEPT_TYPES = {"bool_value", "int_value", "double_value", "string_value", "string_array_value", "int_array_value",
               "double_array_value"}
_PLAIN = (bool, int, float, str, datetime.date, datetime.time, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)


def _drawn_inputs() -> dict[str, str]:
    """The keys of the keyed widgets Streamlit knows now (drawn in the last run), with their value type."""
    try:
        from streamlit.runtime.state.session_state_proxy import get_session_state

        state = get_session_state()._state
        metadata = state._new_widget_state.widget_metadata
        keys = state._key_id_mapper.id_key_mapping
        return {keys[wid]: meta.value_type for wid, meta in metadata.items() if wid in keys}
    except (AttributeError, KeyError, TypeError):  # Streamlit's internals changed: keep nothing, break nothing
        return {}


def keep_values() -> None:
    """Remember this session's input values and restore those whose widgets were not drawn (see module doc)."""
    kept: dict = st.session_state.setdefault(VALUES, {})
    for key, value_type in _drawn_inputs().items():
        if value_type not in _KEPT_TYPES or key.startswith("_") or key not in st.session_state:
            continue
        value = st.session_state[key]
        if _plain(value):
            kept[key] = value
    for key, value in kept.items():
        if key not in st.session_state:
            st.session_state[key] = value


def forget(*prefixes: str) -> None:
    """Drop the kept values of the widgets whose key starts with one of ``prefixes`` (e.g. after a reset)."""
    kept: dict = st.session_state.get(VALUES, {})
    for key in [k for k in kept if k.startswith(prefixes)]:
        del kept[key]
        st.session_state.pop(key, None)
