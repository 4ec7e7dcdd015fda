"""Explainers."""
from engine.explainers.anchor_tabular import AnchorTabular  # noqa: E402,F401
from engine.explainers.cem import CEM  # noqa: E402,F401
