"""Lantern: a browser workbench for ML outlier detection, adversarial detection and explanations.

Run with ``streamlit run app.py``. This file sets the page config, the navigation over
``pages/`` and the sidebar every page shares.
"""

import streamlit as st

from ui import data as ui_data
from ui import runtime
from ui.runtime import MANAGER, session_id

runtime.bootstrap()  # the server's start-up, once per process (later runs return at once)
st.set_page_config(page_title="Lantern", page_icon=":material/flare:", layout="wide")

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
page = st.navigation({section: pages for section, pages in PAGES.items() if pages})

with st.sidebar:
    st.markdown("### :material/flare: Lantern")
    table = ui_data.active_table()
    st.caption("Active dataset")
    st.markdown(f"**{table.name}**  \n{len(table.frame):,} rows × {len(table.frame.columns):,} columns")
    mine = [job for job in (st.session_state.get(k) for k in st.session_state if str(k).startswith("job::"))
            if job is not None and job.active]
    stats = MANAGER.stats()
    st.caption("Session")
    st.markdown(
        f"{len(mine)} job(s) of yours running or queued  \n"
        f"server: {stats['running']} running · {stats['queued']} queued"
    )
    st.caption(f"session {session_id()[:8]}")

page.run()
