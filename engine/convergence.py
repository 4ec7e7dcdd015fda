"""Did training stop too early? A rule on the loss history, for a hint next to the results.

A model stopped while its loss was still falling fast has not learned the data yet: a detector then
flags what it merely has not fitted (e.g. every R-peak of an ECG), and the scores mean little. The
rule here looks only at the per-epoch training losses, so every workflow can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["ConvergenceCheck", "FAST_DROP", "MIN_EPOCHS", "check_convergence"]

# Relative loss drop per epoch, over the last epochs, above which the loss is "still falling fast".
FAST_DROP = 0.05
# With fewer epochs than this, one epoch's drop decides (and a single epoch always counts as too few).
MIN_EPOCHS = 3
# Epochs averaged at the end of a long history.
_WINDOW = 3


@dataclass(frozen=True)
class ConvergenceCheck:
    """What :func:`check_convergence` found.

    Attributes
    ----------
    still_falling : bool
        True when training stopped while the loss was still falling fast.
    epochs_run : int
        Epochs in the history.
    epochs_planned : int or None
        Epochs asked for, when known.
    drop_per_epoch : float or None
        Mean relative loss drop per epoch over the last epochs (0.1 = 10 % per epoch); None with one epoch.
    """

    still_falling: bool
    epochs_run: int
    epochs_planned: int | None
    drop_per_epoch: float | None

    def sentence(self) -> str:
        """The hint in plain words ('' when the loss had flattened)."""
        if not self.still_falling:
            return ""
        of = f" of {self.epochs_planned}" if self.epochs_planned else ""
        if self.drop_per_epoch is None:
            what = f"training stopped after epoch {self.epochs_run}{of}, too early to tell whether the loss had settled"
        else:
            what = (f"the loss was still falling fast when training stopped at epoch {self.epochs_run}{of} "
                    f"(down {100 * self.drop_per_epoch:.0f} % per epoch over the last epochs)")
        return (f"{what[0].upper()}{what[1:]}: the model has not finished learning what normal looks like, so its "
                "scores and flags may mostly show what it has not fitted yet. Train for more epochs (or a larger "
                "learning rate) until the loss flattens.")


def check_convergence(loss: Sequence[float], epochs_planned: int | None = None, *,
                      fast_drop: float = FAST_DROP) -> ConvergenceCheck:
    """Whether training stopped while the loss was still falling fast.

    The relative drop per epoch is the mean over the last (up to three) epochs of
    ``(loss[e − 1] − loss[e]) / |loss[e − 1]|`` (a rise counts as 0). Training stopped "while still falling
    fast" when that drop is above ``fast_drop``, or when only one epoch ran (no slope to judge: one epoch is
    too few).

    Parameters
    ----------
    loss : sequence of float
        Training loss after each epoch, first to last.
    epochs_planned : int, optional
        Epochs that were asked for (only for the sentence).
    fast_drop : float
        Relative drop per epoch counted as fast (default 5 %).

    Returns
    -------
    ConvergenceCheck
        ``still_falling`` and the figures behind it; ``.sentence()`` is the hint.

    Examples
    --------
    >>> check_convergence([1.0, 0.5, 0.3], epochs_planned=3).still_falling
    True
    >>> check_convergence([1.0, 0.2, 0.1, 0.099, 0.0985, 0.098]).still_falling
    False
    >>> check_convergence([0.8]).sentence()[:40]
    'Training stopped after epoch 1, too earl'
    """
    values = [float(v) for v in loss if v is not None and math.isfinite(float(v))]
    n = len(values)
    if n == 0:
        return ConvergenceCheck(False, 0, epochs_planned, None)
    if n == 1:
        return ConvergenceCheck(True, 1, epochs_planned, None)
    last = values[-(min(_WINDOW, n - 1) + 1):]
    # A rise counts as no drop; the scale is the earlier loss's size (losses may be negative, e.g. energies).
    drops = [min(max((a - b) / max(abs(a), 1e-12), 0.0), 1.0) for a, b in zip(last, last[1:])]
    drop = sum(drops) / len(drops)
    return ConvergenceCheck(drop > fast_drop, n, epochs_planned, drop)
