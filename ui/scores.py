"""Widgets for scored rows: the threshold-percentile slider, score charts and label metrics.

Shared by every detector page. The slider re-thresholds *cached* scores: moving it never
re-scores or retrains anything.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from engine.metrics import ScoreCurves, binary_report
from ui import charts


def percentile_slider(key: str, reference_scores: np.ndarray, *, default: float = 95.0,
                      label: str = "Threshold percentile", run_token: object = None,
                      help: str | None = None) -> tuple[float, float]:
    """Slider for the share of reference rows considered normal; returns (percentile, threshold).

    With ``run_token`` the slider starts at ``default`` each time the token changes (a new run), and keeps the
    visitor's value while it stays the same.
    """
    from engine.base import ThresholdMixin

    kwargs = {"value": default}
    if run_token is not None:
        if st.session_state.get(f"{key}::run") != run_token:
            st.session_state[key] = float(default)
            st.session_state[f"{key}::run"] = run_token
        kwargs = {}
    percentile = st.slider(
        label, min_value=50.0, max_value=99.9, step=0.1, key=key,
        help=help or "The threshold is this percentile of the scores of the training rows: at 95, the 5 % "
                     "highest-scoring training rows would be flagged.", **kwargs,
    )
    return percentile, ThresholdMixin.percentile_threshold(reference_scores, percentile)


def reference_overlay(reference: np.ndarray, scores: np.ndarray, threshold: float, *, key: str,
                      reference_name: str = "training rows", scores_name: str = "this file", bins: int = 60) -> None:
    """Where new scores fall against the training scores: both distributions (share of rows) and the threshold.

    ``reference`` may be the training scores' quantiles (as a saved detector keeps them): each quantile then
    stands for an equal share of the training rows.
    """
    import plotly.graph_objects as go

    reference, scores = np.asarray(reference, dtype=float), np.asarray(scores, dtype=float)
    edges = np.histogram_bin_edges(np.concatenate([reference, scores, [threshold]]), bins=bins)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for name, values, color in ((reference_name, reference, charts.INLIER), (scores_name, scores, charts.OUTLIER)):
        counts, _ = np.histogram(values, bins=edges)
        fig.add_trace(go.Bar(x=centers, y=counts / max(len(values), 1), width=width, name=name, marker_color=color,
                             opacity=0.6))
    charts.threshold_line(fig, threshold, axis="x")
    fig.update_layout(title="Scores: training rows against this file", barmode="overlay", xaxis_title="score",
                      yaxis_title="share of rows", **charts._LAYOUT)
    st.plotly_chart(fig, key=f"overlay::{key}")


def flagged_summary(flags: np.ndarray, what: str = "rows") -> None:
    n = int(np.sum(flags))
    st.metric(f"Flagged {what}", f"{n:,}", help=f"{n / max(len(flags), 1):.2%} of {len(flags):,} {what}")


def distribution_charts(scores: np.ndarray, threshold: float, flags: np.ndarray, *, key: str,
                        labels: np.ndarray | None = None, x=None, x_title: str = "row") -> None:
    """Histogram and score-by-row charts side by side, both with the threshold line."""
    left, right = st.columns(2)
    left.plotly_chart(charts.score_histogram(scores, threshold, labels), key=f"hist::{key}")
    right.plotly_chart(charts.score_index_figure(scores, threshold, flags, x=x, x_title=x_title),
                       key=f"index::{key}")


def label_metrics(labels: np.ndarray, flags: np.ndarray, curves: ScoreCurves | None, *, key: str,
                  names: tuple[str, str] = ("normal", "outlier")) -> None:
    """Precision, recall, F1 and accuracy at the threshold, the confusion matrix, and the cached ROC/PR curves."""
    report = binary_report(labels, flags)
    cols = st.columns(4)
    cols[0].metric("Precision", f"{report.precision:.3f}")
    cols[1].metric("Recall", f"{report.recall:.3f}")
    cols[2].metric("F1", f"{report.f1:.3f}")
    cols[3].metric("Accuracy", f"{report.accuracy:.3f}")
    left, middle, right = st.columns(3)
    left.plotly_chart(charts.confusion_figure(report.confusion, names), key=f"cm::{key}")
    if curves is not None:
        middle.plotly_chart(charts.roc_figure(curves.fpr, curves.tpr, curves.roc_auc), key=f"roc::{key}")
        right.plotly_chart(charts.pr_figure(curves.recall, curves.precision, curves.average_precision),
                           key=f"pr::{key}")
    else:
        middle.info("ROC and PR curves need both classes in the label column.")
