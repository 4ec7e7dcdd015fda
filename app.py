"""Lantern: a browser workbench for ML outlier detection, adversarial detection and explanations.

Run with ``streamlit run app.py``. This file sets the page config, the navigation over
``pages/`` and the sidebar every page shares.
"""

import sys

import streamlit as st

# Everything on the page is served by this server: the favicon is a local file (a ``:material/...:`` page icon
# makes the browser fetch it from fonts.gstatic.com, which a closed network cannot resolve).
st.set_page_config(page_title="Lantern", page_icon="assets/favicon.png", layout="wide")

PAGES = {
    "Data": [st.Page("pages/data.py", title="Data", icon=":material/table:", default=True)],
    "Detect": [
        st.Page("pages/tabular_outliers.py", title="Tabular outliers", icon=":material/scatter_plot:"),
        st.Page("pages/timeseries_outliers.py", title="Time-series outliers", icon=":material/show_chart:"),
        st.Page("pages/adversarial.py", title="Adversarial detection", icon=":material/shield:"),
    ],
    "Explain": [
        st.Page("pages/anchors.py", title="Anchors", icon=":material/rule:"),
        st.Page("pages/cem.py", title="Contrastive explanations", icon=":material/compare:"),
    ],
}
# Streamlit shows its own list of the files in pages/ (lowercase file names) until the app's navigation arrives:
# .streamlit/config.toml hides that list (client.showSidebarNavigation = false) and the app's own navigation is
# switched back on here, before the heavy imports below, so the first visit never shows the raw list.
st.set_option("client.showSidebarNavigation", True)
page = st.navigation({section: pages for section, pages in PAGES.items() if pages})

cold = "tensorflow" not in sys.modules
if cold:  # first visit after a restart: say so instead of a blank page while the ML libraries load
    starting = st.empty()
    starting.info("Starting Lantern: loading the machine-learning libraries (only on the first visit after a "
                  "restart)…", icon=":material/hourglass_top:")

from ui import data as ui_data  # noqa: E402  (heavy: imports the engine and TensorFlow)
from ui import forms, session  # noqa: E402
from ui import runtime  # noqa: E402
from ui.runtime import session_id  # noqa: E402

runtime.bootstrap()  # the server's start-up, once per process (later runs return at once)

if cold:
    starting.empty()

session.bind()  # ?s=<token>: a reload within the session TTL brings this session's data and results back
forms.keep_values()  # form values survive a switch to another page and back

with st.sidebar:
    st.markdown("### :material/flare: Lantern")
    ui_data.sidebar_dataset()  # the page replaces it with the dataset it uses (ui.data.choose_table)
    mine = [job for job in (st.session_state.get(k) for k in st.session_state if str(k).startswith("job::"))
            if job is not None and job.active]
    stats = runtime.manager().stats()
    st.caption("Session")
    st.markdown(
        f"{len(mine)} job(s) of yours running or queued  \n"
        f"server: {stats['running']} running · {stats['queued']} queued"
    )
    st.caption(f"session {session_id()[:8]}")

try:
    page.run()
finally:
    session.save()  # the session's data and finished results, kept server-side for a reload
