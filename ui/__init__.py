"""Shared Streamlit widgets and the job runner behind Lantern's pages.

Pages compose these; only this package and ``pages/`` import streamlit. :mod:`jobs` and :mod:`workflows` do not, and
importing this package does not pull streamlit in where it is not loaded already (the job runner itself is
:mod:`jobs.runner`).
"""

import sys


def _enter_through_app_py() -> None:
    """Make the first visit of a fresh server go through ``app.py``'s ``st.navigation``.

    Until some script run has called ``st.navigation``, Streamlit treats a ``pages/`` folder next to
    the main script as legacy multipage mode, so a first visitor landing on ``/tabular_outliers``
    would run that page file alone: no page config, no navigation, no sidebar. Switching the flag
    off and rerunning once (this module is imported by every page) sends that run through app.py.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        import streamlit as st
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is not None:
            st.rerun()


if "streamlit" in sys.modules:  # in a worker process (no streamlit) there are no pages to route
    _enter_through_app_py()
