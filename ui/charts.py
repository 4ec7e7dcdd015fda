"""Plotly figures shared by the pages: loss curves, score distributions, ROC/PR, confusion matrix."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, legend=dict(orientation="h", y=-0.2))
INLIER, OUTLIER = "#4C78A8", "#E45756"


def threshold_line(fig: go.Figure, value: float, *, axis: str = "x", label: str = "threshold") -> go.Figure:
    """A dashed line across the plot at ``value`` of the ``axis`` ('x': vertical, 'y': horizontal), labelled.

    Set as plain layout entries: plotly's ``add_vline``/``add_hline`` cost several milliseconds each, and
    the threshold charts are redrawn on every slider move.
    """
    line = dict(type="line", line=dict(dash="dash", color="black", width=1.5))
    if axis == "x":
        line.update(xref="x", yref="paper", x0=value, x1=value, y0=0, y1=1)
        note = dict(xref="x", yref="paper", x=value, y=1, xanchor="left", yanchor="bottom")
    else:
        line.update(xref="paper", yref="y", x0=0, x1=1, y0=value, y1=value)
        note = dict(xref="paper", yref="y", x=1, y=value, xanchor="right", yanchor="bottom")
    fig.update_layout(shapes=[*fig.layout.shapes, line],
                      annotations=[*fig.layout.annotations, dict(text=label, showarrow=False, **note)])
    return fig


def loss_figure(events: list[dict], title: str = "Training loss") -> go.Figure:
    """Loss per batch (thin line) and per epoch (markers) from job progress events."""
    # A snapshot first: a running job's thread appends to (and thins) ``events`` while the page reads it, and
    # pandas walks a list of dicts more than once, so reading the live list fails with mismatched lengths.
    frame = pd.DataFrame(list(events))
    fig = go.Figure()
    if not frame.empty:
        batches = frame[frame["kind"] == "batch"]
        epochs = frame[frame["kind"] == "epoch"]
        if not batches.empty:
            fig.add_trace(go.Scatter(x=batches["global_step"], y=batches["loss"], mode="lines",
                                     name="running loss (batch)", line=dict(width=1, color="#9ecae9")))
        if not epochs.empty:
            fig.add_trace(go.Scatter(x=epochs["global_step"], y=epochs["loss"], mode="lines+markers",
                                     name="epoch loss", line=dict(color=INLIER)))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", **_LAYOUT)
    return fig


def score_histogram(scores: np.ndarray, threshold: float, labels: np.ndarray | None = None,
                    title: str = "Score distribution", bins: int = 80) -> go.Figure:
    """Histogram of scores (split by label when given) with the threshold as a vertical line.

    Bins are counted here, so the browser receives ``bins`` bars rather than every score.
    """
    scores = np.asarray(scores, dtype=float)
    edges = np.histogram_bin_edges(scores, bins=bins)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    groups = [("all rows", np.ones(len(scores), bool), INLIER)] if labels is None else [
        ("labelled normal", ~np.asarray(labels).astype(bool), INLIER),
        ("labelled outlier", np.asarray(labels).astype(bool), OUTLIER)]
    fig = go.Figure()
    for name, mask, color in groups:
        counts, _ = np.histogram(scores[mask], bins=edges)
        fig.add_trace(go.Bar(x=centers, y=counts, width=width, name=name, marker_color=color, opacity=0.75))
    threshold_line(fig, threshold, axis="x")
    fig.update_layout(title=title, barmode="overlay", xaxis_title="score", yaxis_title="rows", **_LAYOUT)
    return fig


def score_index_figure(scores: np.ndarray, threshold: float, flagged: np.ndarray, x: Sequence | None = None,
                       title: str = "Score by row", x_title: str = "row", max_points: int = 6000) -> go.Figure:
    """Scores against row (or time) with flagged points highlighted and the threshold line.

    Every flagged point is drawn; unflagged points are thinned to about ``max_points`` evenly spaced
    ones so the chart stays quick with many rows.
    """
    scores = np.asarray(scores, dtype=float)
    x = np.arange(len(scores)) if x is None else np.asarray(x)
    flagged = np.asarray(flagged).astype(bool)
    normal = np.flatnonzero(~flagged)
    if len(normal) > max_points:
        normal = normal[np.linspace(0, len(normal) - 1, max_points).astype(int)]
        title = f"{title} (normal rows thinned to {max_points:,})"
    marked = np.flatnonzero(flagged)
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=x[normal], y=scores[normal], mode="markers", name="normal",
                               marker=dict(size=3, color=INLIER)))
    fig.add_trace(go.Scattergl(x=x[marked], y=scores[marked], mode="markers", name="flagged",
                               marker=dict(size=5, color=OUTLIER)))
    threshold_line(fig, threshold, axis="y")
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="score", **_LAYOUT)
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auc: float, title: str = "ROC curve") -> go.Figure:
    fig = go.Figure(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"AUC {auc:.3f}", line=dict(color=INLIER)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="grey")))
    fig.update_layout(title=f"{title} (AUC {auc:.3f})", xaxis_title="false positive rate",
                      yaxis_title="true positive rate", **_LAYOUT)
    return fig


def pr_figure(recall: np.ndarray, precision: np.ndarray, ap: float, title: str = "Precision-recall curve") -> go.Figure:
    fig = go.Figure(go.Scatter(x=recall, y=precision, mode="lines", name=f"AP {ap:.3f}", line=dict(color=OUTLIER)))
    fig.update_layout(title=f"{title} (AP {ap:.3f})", xaxis_title="recall", yaxis_title="precision", **_LAYOUT)
    return fig


def confusion_figure(matrix: np.ndarray, names: Sequence[str], title: str = "Confusion matrix") -> go.Figure:
    """Counts of actual (rows) against predicted (columns) classes, as a heatmap with the counts written in."""
    matrix = np.asarray(matrix)
    fig = go.Figure(go.Heatmap(z=matrix, x=[f"predicted {n}" for n in names], y=[f"actual {n}" for n in names],
                               text=matrix, texttemplate="%{text:,}", colorscale="Blues", showscale=False))
    fig.update_layout(title=title, yaxis_autorange="reversed", **_LAYOUT)
    return fig


def bar_figure(names: Sequence[str], values: Sequence[float], title: str, x_title: str = "") -> go.Figure:
    """Horizontal bars, largest at the top (per-feature errors or changes)."""
    order = np.argsort(np.abs(np.asarray(values, dtype=float)))
    fig = go.Figure(go.Bar(x=np.asarray(values)[order], y=np.asarray(names)[order], orientation="h",
                           marker_color=INLIER))
    fig.update_layout(title=title, xaxis_title=x_title, **{**_LAYOUT, "height": max(260, 22 * len(names) + 80)})
    return fig
