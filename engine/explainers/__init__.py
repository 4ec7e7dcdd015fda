"""Explainers."""
from engine.explainers.anchor_tabular import AnchorTabular  # noqa: E402,F401
