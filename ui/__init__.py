"""Shared Streamlit widgets and the job runner behind Lantern's pages.

Pages compose these; only this package and ``pages/`` import streamlit.
"""

from streamlit.runtime.pages_manager import PagesManager as _PagesManager


def _enter_through_app_py() -> None:
    """Make the first visit of a fresh server go through ``app.py``'s ``st.navigation``.

    Until some script run has called ``st.navigation``, Streamlit treats a ``pages/`` folder next to
    the main script as legacy multipage mode, so a first visitor landing on ``/tabular_outliers``
    would run that page file alone: no page config, no navigation, no sidebar. Switching the flag
    off and rerunning once (this module is imported by every page) sends that run through app.py.
    """
    if _PagesManager.uses_pages_directory:
        _PagesManager.uses_pages_directory = False
        import streamlit as st
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is not None:
            st.rerun()


_enter_through_app_py()
