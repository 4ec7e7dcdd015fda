"""A one-job page for the session tests, laid out as the workflow pages are (form, Train, panel, results), inside
the session binding app.py does (``?s=<token>``: a reload brings the session back)."""

import streamlit as st

from tests.app.session_jobs import FitRequest, fit
from ui import forms, session, training

KEY = "demo"

session.bind()
forms.keep_values()
epochs = st.number_input("Epochs", 1, 100_000, 3, key="demo:epochs")
if st.button("Train", key="demo:train"):
    st.session_state["runs"] = st.session_state.get("runs", 0) + 1
    training.start_job(KEY, "Train demo", fit, FitRequest(int(epochs), st.session_state["runs"]))
training.panel(KEY, compare=False)
view = training.outcome(KEY, lambda answer, context: answer)
training.compare(KEY, lambda answer, context: answer,
                 lambda run: {"run": run.run, "flagged": run.flagged, "loss": round(run.loss, 4)})
if view is not None:
    st.metric("Results of run", view.run)
    st.metric("Epochs trained", view.epochs_run)
    st.caption(f"stopped: {view.stopped}")
session.save()
