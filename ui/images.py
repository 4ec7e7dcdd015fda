"""Images stored as flat pixel rows: find their shape and draw them side by side.

Bundled image datasets keep each image as one row of ``pixel0 .. pixel{h*w-1}`` columns (row-major).
The adversarial-detection and CEM pages show an original beside its changed version and the
difference between them; :func:`image_grid` draws any such set of panels in one plotly figure:
plain images in greys on a shared value range, difference maps in a red-blue scale centred on 0.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_PIXEL = re.compile(r"^pixel(\d+)$")


def square_image_shape(columns: Sequence[str]) -> tuple[int, int] | None:
    """``(side, side)`` when ``columns`` are exactly ``pixel0 .. pixel{side²-1}`` in order, else None.

    Examples
    --------
    >>> square_image_shape([f"pixel{i}" for i in range(64)])
    (8, 8)
    >>> square_image_shape(["age", "income"]) is None
    True
    """
    n = len(columns)
    side = math.isqrt(n)
    if n < 4 or side * side != n:
        return None
    for position, name in enumerate(columns):
        match = _PIXEL.match(str(name))
        if match is None or int(match.group(1)) != position:
            return None
    return side, side


def as_image(row: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """A flat pixel row as an ``(h, w)`` greyscale or ``(h, w, 3)`` colour image."""
    shape = tuple(int(d) for d in image_shape)
    image = np.asarray(row, dtype=float).reshape(shape)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    image_shape: Sequence[int],
    *,
    diverging: Sequence[bool] | None = None,
    value_range: tuple[float, float] | None = None,
    diverging_title: str = "change",
    height: int = 300,
) -> go.Figure:
    """Panels side by side: images in greys (dark = high), difference maps in red-blue around 0.

    Parameters
    ----------
    images : sequence of array
        Flat pixel rows (or already shaped images), one per panel.
    titles : sequence of str
        One title per panel.
    image_shape : (height, width) or (height, width, channels)
        Shape of one image; 3 channels are drawn as colour (values in [0, 1] or [0, 255]).
    diverging : sequence of bool, optional
        Which panels are signed differences (red = increase, blue = decrease, white = unchanged).
    value_range : (low, high), optional
        Shared colour range of the plain panels; their joint min and max by default, so an original
        and its changed version are drawn on the same scale.
    diverging_title : str
        Title of the difference colour bar.
    height : int
        Figure height in pixels.

    Examples
    --------
    >>> row = np.linspace(0, 1, 64)
    >>> fig = image_grid([row, row * 0.5, row * 0.5 - row], ["original", "changed", "change"], (8, 8),
    ...                  diverging=[False, False, True])
    >>> len(fig.data)
    3
    """
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles; give one title per image.")
    diverging = [False] * len(images) if diverging is None else list(diverging)
    if len(diverging) != len(images):
        raise ValueError(f"{len(images)} images but {len(diverging)} diverging flags.")
    shaped = [as_image(image, image_shape) for image in images]
    plain = [img for img, signed in zip(shaped, diverging) if not signed]
    signed_maps = [img for img, signed in zip(shaped, diverging) if signed]
    if value_range is None and plain:
        value_range = (min(float(np.min(i)) for i in plain), max(float(np.max(i)) for i in plain))
        if value_range[0] == value_range[1]:
            value_range = (value_range[0], value_range[0] + 1.0)
    largest_change = max([float(np.max(np.abs(m))) for m in signed_maps] + [1e-12])

    fig = make_subplots(rows=1, cols=len(shaped), subplot_titles=list(titles), horizontal_spacing=0.04)
    for col, (image, signed) in enumerate(zip(shaped, diverging), start=1):
        if image.ndim == 3:  # colour: go.Image wants 0-255
            scale = 255.0 if float(np.max(image)) <= 1.0 else 1.0
            fig.add_trace(go.Image(z=np.clip(image * scale, 0, 255)), row=1, col=col)
        else:
            fig.add_trace(go.Heatmap(
                z=image, coloraxis="coloraxis2" if signed else "coloraxis",
                hovertemplate="row %{y}, column %{x}: %{z:.3g}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain",
                         row=1, col=col)
        fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, autorange="reversed",
                         scaleanchor=f"x{'' if col == 1 else col}", constrain="domain", row=1, col=col)
    fig.update_layout(
        coloraxis=dict(colorscale="Greys", cmin=value_range[0] if value_range else None,
                       cmax=value_range[1] if value_range else None, showscale=False),
        coloraxis2=dict(colorscale="RdBu_r", cmid=0.0, cmin=-largest_change, cmax=largest_change,
                        showscale=bool(signed_maps), colorbar=dict(title=diverging_title, thickness=12)),
        margin=dict(l=10, r=10, t=40, b=10), height=height,
    )
    return fig
