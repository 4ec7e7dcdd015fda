"""Shared Streamlit widgets and the job runner behind Lantern's pages.

Pages compose these; only this package and ``pages/`` import streamlit.
"""
