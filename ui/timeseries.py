"""Plotly figures for time series: series with reconstruction and flags, a feature × time score heatmap, one window.

Long series are thinned before they reach the browser: lines keep each bucket's lowest and highest
point (so a one-sample spike survives), the heatmap shows the largest score of each bucket of steps.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.charts import INLIER, OUTLIER

RECONSTRUCTION = "#F58518"
LABELLED = "rgba(228, 87, 86, 0.12)"
_MARGIN = dict(l=10, r=10, t=50, b=10)
_LEGEND = dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right")


def envelope_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of at most about ``max_points`` points that keep the shape of a long line.

    The series is cut into ``max_points / 2`` buckets and each keeps its lowest and highest point,
    plus the first and last point of the series.

    Examples
    --------
    >>> envelope_indices(np.arange(5.0), 100).tolist()
    [0, 1, 2, 3, 4]
    >>> spike = np.zeros(10_000); spike[4321] = 9.0
    >>> 4321 in envelope_indices(spike, 200)
    True
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    size = math.ceil(n / max(1, max_points // 2))
    n_buckets = math.ceil(n / size)
    padded = np.full(n_buckets * size, np.nan)
    padded[:n] = np.where(np.isfinite(values), values, np.nan)
    buckets = padded.reshape(n_buckets, size)
    base = np.arange(n_buckets) * size
    missing = np.isnan(buckets)
    filled = ~np.all(missing, axis=1)
    low = base + np.argmin(np.where(missing, np.inf, buckets), axis=1)
    high = base + np.argmax(np.where(missing, -np.inf, buckets), axis=1)
    return np.unique(np.concatenate([[0, n - 1], low[filled], high[filled]]))


def bucket_max(scores: np.ndarray, max_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the steps into at most ``max_columns`` consecutive buckets and take each one's maximum.

    Returns ``(starts, maxima)``: the first step of each bucket and an array ``(n_buckets, n_features)``.

    Examples
    --------
    >>> starts, maxima = bucket_max(np.arange(10.0)[:, None], 4)
    >>> starts.tolist(), maxima[:, 0].tolist()
    ([0, 3, 6, 9], [2.0, 5.0, 8.0, 9.0])
    """
    scores = np.asarray(scores, dtype=float)
    size = max(1, math.ceil(len(scores) / max(1, int(max_columns))))
    starts = np.arange(0, len(scores), size)
    return starts, np.maximum.reduceat(scores, starts, axis=0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` step of every run of True in ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def _shade_labelled(fig: go.Figure, x: np.ndarray, labelled: np.ndarray | None, max_runs: int = 300) -> str:
    """Shade the labelled stretches on every subplot; returns a note for the title when some were left out."""
    if labelled is None or not np.any(labelled):
        return ""
    runs = _runs(labelled)
    for first, last in runs[:max_runs]:
        fig.add_vrect(x0=x[first], x1=x[last], fillcolor=LABELLED, line_width=0, layer="below", row="all", col=1)
    return f" · first {max_runs} of {len(runs)} labelled stretches shaded" if len(runs) > max_runs else ""


def series_figure(x: Sequence, series: np.ndarray, reconstruction: np.ndarray, flagged: np.ndarray,
                  names: Sequence[str], *, labelled: np.ndarray | None = None, x_title: str = "time",
                  max_points: int = 4000, max_flags: int = 5000) -> go.Figure:
    """One row per feature: the series, its reconstruction and the flagged steps; labelled stretches shaded.

    ``series``, ``reconstruction`` and ``flagged`` are ``(n_steps, n_features)`` for the columns in
    ``names``. Lines are thinned to about ``max_points`` points (bucket minima and maxima) and the
    flagged markers to ``max_flags``.
    """
    x = np.asarray(x)
    series, reconstruction = np.asarray(series, dtype=float), np.asarray(reconstruction, dtype=float)
    flagged = np.asarray(flagged, dtype=bool)
    n_rows = len(names)
    fig = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=min(0.08, 0.3 / n_rows),
                        subplot_titles=[str(n) for n in names])
    notes = []
    for row, name in enumerate(names):
        keep = envelope_indices(series[:, row], max_points)
        keep_recon = envelope_indices(reconstruction[:, row], max_points)
        marked = np.flatnonzero(flagged[:, row])
        if len(marked) > max_flags:
            marked = marked[np.linspace(0, len(marked) - 1, max_flags).astype(int)]
            notes.append(f"{name}: {max_flags:,} of {int(flagged[:, row].sum()):,} flagged steps drawn")
        first = row == 0
        fig.add_trace(go.Scatter(x=x[keep], y=series[keep, row], mode="lines", name="series", legendgroup="series",
                                 showlegend=first, line=dict(color=INLIER, width=1)), row=row + 1, col=1)
        fig.add_trace(go.Scatter(x=x[keep_recon], y=reconstruction[keep_recon, row], mode="lines",
                                 name="reconstruction", legendgroup="recon", showlegend=first,
                                 line=dict(color=RECONSTRUCTION, width=1, dash="dot")), row=row + 1, col=1)
        fig.add_trace(go.Scatter(x=x[marked], y=series[marked, row], mode="markers", name="flagged",
                                 legendgroup="flagged", showlegend=first,
                                 marker=dict(color=OUTLIER, size=6, symbol="circle-open", line=dict(width=2))),
                      row=row + 1, col=1)
    shade_note = _shade_labelled(fig, x, labelled)
    if labelled is not None and np.any(labelled):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="labelled outlier",
                                 marker=dict(color="rgba(228, 87, 86, 0.35)", symbol="square", size=12)))
    thinned = len(series) > max_points
    title = "Series, reconstruction and flagged steps"
    if thinned:
        title += f" (lines thinned to about {max_points:,} points per feature, spikes kept)"
    fig.update_xaxes(title_text=x_title, row=n_rows, col=1)
    fig.update_layout(title=dict(text=title + shade_note, font=dict(size=14)), height=140 + 200 * n_rows,
                      margin=_MARGIN, legend=_LEGEND)
    if notes:
        fig.add_annotation(text="; ".join(notes), showarrow=False, xref="paper", yref="paper", x=0, y=-0.02,
                           yanchor="top", font=dict(size=11, color="grey"))
    return fig


# Diverging and split at the threshold: anything above it is clearly red, anything below clearly blue.
THRESHOLD_COLORSCALE = [[0.0, "#2166ac"], [0.5, "#d1e5f0"], [0.5, "#f4a582"], [1.0, "#b2182b"]]
HEATMAP_ROW_PX = 40  # height of one feature's row
HEATMAP_MIN_PLOT_PX = 160  # the plot area of a heatmap with few features (one feature is not a thin strip)


def relative_to_threshold(scores: np.ndarray) -> np.ndarray:
    """Feature scores (0 = the feature's threshold) mapped to [-1, 1] per feature, keeping the sign.

    Positive scores are divided by the feature's robust largest positive score (99.5th percentile),
    negative ones by its robust most negative score (0.5th percentile), so 0 stays each feature's
    threshold, every flagged value is above 0 and features of different scales share one colour bar.

    Examples
    --------
    >>> relative_to_threshold(np.array([[-4.0], [-2.0], [0.0], [0.5], [1.0]]))[:, 0].round(2).tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    scores = np.asarray(scores, dtype=float)
    out = np.zeros_like(scores)
    for f in range(scores.shape[1]):
        column = scores[:, f]
        finite = column[np.isfinite(column)]
        above, below = finite[finite > 0], finite[finite < 0]
        high = float(np.percentile(above, 99.5)) if above.size else 1.0
        low = float(-np.percentile(below, 0.5)) if below.size else 1.0
        out[:, f] = np.where(column > 0, column / max(high, 1e-12), column / max(low, 1e-12))
    return np.clip(np.nan_to_num(out, nan=0.0), -1.0, 1.0)


def heatmap_height(n_features: int) -> int:
    """Pixel height of the score heatmap: a readable band even for one feature.

    Examples
    --------
    >>> heatmap_height(1), heatmap_height(10)
    (310, 550)
    """
    return 150 + max(HEATMAP_MIN_PLOT_PX, HEATMAP_ROW_PX * int(n_features))


def score_heatmap(x: Sequence, scores: np.ndarray, names: Sequence[str], *, x_title: str = "time",
                  max_columns: int = 2000) -> go.Figure:
    """Feature × time heatmap of feature scores, centred on each feature's threshold: red above, blue below.

    ``scores`` are feature scores (``> 0``: above the feature's threshold, flagged). Each feature is
    scaled on its own (:func:`relative_to_threshold`), so the colour scale's midpoint is every
    feature's threshold and a flagged value is always red, however small. Long series are shown in at
    most ``max_columns`` columns, each the largest score of its bucket of steps (a flagged step keeps
    its bucket red). Hovering shows the score itself.

    Examples
    --------
    >>> fig = score_heatmap(np.arange(5000), np.random.default_rng(0).normal(size=(5000, 3)), ["a", "b", "c"])
    >>> fig.data[0].z.shape  # 5,000 steps in buckets of 3
    (3, 1667)
    >>> fig.data[0].zmid, fig.data[0].zmin, fig.data[0].zmax
    (0.0, -1.0, 1.0)
    """
    x = np.asarray(x)
    starts, maxima = bucket_max(scores, max_columns)
    z = relative_to_threshold(maxima).T
    step = int(starts[1] - starts[0]) if len(starts) > 1 else 1
    fig = go.Figure(go.Heatmap(
        z=z, x=x[starts], y=[str(n) for n in names], customdata=maxima.T, colorscale=THRESHOLD_COLORSCALE,
        zmid=0.0, zmin=-1.0, zmax=1.0,
        colorbar=dict(title=dict(text="score vs threshold", side="right"), thickness=12,
                      tickvals=[-1.0, 0.0, 1.0], ticktext=["far below", "threshold", "far above"]),
        hovertemplate=f"{x_title} %{{x}}<br>%{{y}}<br>feature score %{{customdata:.4g}} "
                      "(above 0: flagged)<extra></extra>",
    ))
    title = "Feature scores over time, centred on each feature's threshold (red: above it, flagged; blue: below)"
    if step > 1:
        title += f" · each column is the largest score of {step:,} steps"
    fig.update_layout(title=dict(text=title, font=dict(size=14)), xaxis_title=x_title,
                      height=heatmap_height(len(names)), margin=_MARGIN,
                      yaxis=dict(autorange="reversed", type="category"))
    return fig


def window_figure(x: Sequence, series: np.ndarray, reconstruction: np.ndarray, scores: np.ndarray,
                  names: Sequence[str], *, x_title: str = "time") -> go.Figure:
    """One window: each feature's series and reconstruction, then every feature's score per step.

    All arrays are ``(seq_len, n_features)`` for the columns in ``names``; in the score row the
    dashed line at 0 is the threshold, and markers above it are flagged steps.
    """
    x = np.asarray(x)
    series, reconstruction, scores = (np.asarray(a, dtype=float) for a in (series, reconstruction, scores))
    n_rows = len(names) + 1
    fig = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=min(0.08, 0.3 / n_rows),
                        subplot_titles=[str(n) for n in names] + ["feature scores (threshold at 0)"])
    palette = ["#B279A2", "#54A24B", "#72B7B2", "#EECA3B", "#9D755D", "#FF9DA6", "#BAB0AC", "#4C78A8"]
    for row, name in enumerate(names):
        first = row == 0
        fig.add_trace(go.Scatter(x=x, y=series[:, row], mode="lines", name="series", legendgroup="series",
                                 showlegend=first, line=dict(color=INLIER)), row=row + 1, col=1)
        fig.add_trace(go.Scatter(x=x, y=reconstruction[:, row], mode="lines", name="reconstruction",
                                 legendgroup="recon", showlegend=first,
                                 line=dict(color=RECONSTRUCTION, dash="dot")), row=row + 1, col=1)
        flagged = scores[:, row] > 0
        fig.add_trace(go.Scatter(x=x[flagged], y=series[flagged, row], mode="markers", name="flagged",
                                 legendgroup="flagged", showlegend=first,
                                 marker=dict(color=OUTLIER, size=7, symbol="circle-open", line=dict(width=2))),
                      row=row + 1, col=1)
        fig.add_trace(go.Scatter(x=x, y=scores[:, row], mode="lines", name=f"score: {name}",
                                 line=dict(color=palette[row % len(palette)], width=1.5)), row=n_rows, col=1)
    fig.add_hline(y=0.0, line_dash="dash", line_color="black", row=n_rows, col=1)
    fig.update_xaxes(title_text=x_title, row=n_rows, col=1)
    fig.update_layout(height=120 + 180 * n_rows, margin=_MARGIN, legend=_LEGEND)
    return fig
