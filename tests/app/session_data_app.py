"""The Data page inside the session binding app.py does (AppTest runs app.py itself as Streamlit's old
pages/-directory app, where a rerun runs the page without app.py; this script has no pages/ folder beside it)."""

from pathlib import Path

import streamlit as st

page = st.navigation([st.Page(Path(__file__).resolve().parents[2] / "pages" / "data.py", default=True)])

from ui import data as ui_data, forms, session  # noqa: E402

session.bind()
forms.keep_values()
st.sidebar.markdown(f"Active dataset: **{ui_data.active_table().name}**")
try:
    page.run()
finally:
    session.save()
