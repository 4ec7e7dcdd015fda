"""Each workflow's plain-Python logic (preparation, run and view objects, thresholds, exports, sentences): no streamlit."""
