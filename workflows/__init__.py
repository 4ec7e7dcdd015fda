"""Plain-Python workflow logic behind the pages: preparation, run and view objects, sentences (no streamlit)."""
