"""Outlier detectors."""

from engine.od.aegmm import OutlierAEGMM  # noqa: E402,F401
