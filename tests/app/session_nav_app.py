"""Two pages under one navigation, as app.py does: the form values of one survive a visit to the other."""

import streamlit as st

from ui import forms

page = st.navigation([st.Page("session_pages/form.py", title="Form", default=True),
                      st.Page("session_pages/other.py", title="Other")])
forms.keep_values()
page.run()
