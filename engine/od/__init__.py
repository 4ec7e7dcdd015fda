"""Outlier detectors."""
