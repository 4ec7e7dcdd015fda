"""Lantern's workflows in plain Python: data preparation, run views, threshold maths and exports (no streamlit)."""
