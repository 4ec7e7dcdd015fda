"""Download buttons: formula-safe CSV, explanation JSON and detector archives, built on click."""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd
import streamlit as st

from engine.export import safe_csv_bytes
from engine.saving import detector_to_bytes


def csv_button(label: str, frame: pd.DataFrame | Callable[[], pd.DataFrame], file_name: str, key: str) -> None:
    """A download button for ``frame`` as CSV; text cells are escaped against formula injection."""
    data = (lambda: safe_csv_bytes(frame())) if callable(frame) else safe_csv_bytes(frame)
    st.download_button(label, data=data, file_name=file_name, mime="text/csv", key=key,
                       icon=":material/download:", on_click="ignore")


def json_button(label: str, text: str | Callable[[], str], file_name: str, key: str) -> None:
    """A download button for a JSON document (an explanation's ``to_json()``)."""
    st.download_button(label, data=text, file_name=file_name, mime="application/json", key=key,
                       icon=":material/download:", on_click="ignore")


def archive_button(label: str, data: Callable[[], bytes], file_name: str, key: str) -> None:
    """A download button for an archive (JSON config + weights, no pickle) that ``data()`` makes on click."""
    st.download_button(label, data=data, file_name=file_name, mime="application/zip", key=key,
                       icon=":material/download:", on_click="ignore")


def detector_button(label: str, detector: Any, file_name: str, key: str) -> None:
    """A download button for a detector's archive."""
    archive_button(label, lambda: detector_to_bytes(detector), file_name, key)
