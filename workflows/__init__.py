"""Each workflow's plain-Python logic (preparation, run/view objects, threshold maths, exports); no streamlit."""
