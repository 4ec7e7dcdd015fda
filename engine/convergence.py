"""Did training stop too early? A rule on the loss history, for a hint next to the results.

A model stopped while its loss was still falling fast has not learned the data yet: a detector then
flags what it merely has not fitted (e.g. every R-peak of an ECG), and the scores mean little. The
rule here looks only at the per-epoch training losses, so every workflow can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["ConvergenceCheck", "FAST_DROP", "RECENT_SHARE", "check_convergence"]

# Relative loss drop per epoch, over the last epochs, above which the loss is "still falling fast".
FAST_DROP = 0.05
# ... while the last epochs made more than this share of all the improvement since the first epoch.
RECENT_SHARE = 0.10
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
        Net relative loss drop per epoch over the last epochs (0.1 = 10 % per epoch); None with one epoch.
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
                      fast_drop: float = FAST_DROP, recent_share: float = RECENT_SHARE) -> ConvergenceCheck:
    """Whether training stopped while the loss was still falling fast.

    The drop per epoch is the net relative drop over the last ``k`` (up to three) epochs,
    ``(loss[−k−1] − loss[−1]) / |loss[−k−1]| / k`` (0 when the loss rose). Training stopped "while still falling
    fast" when that drop is above ``fast_drop`` and those epochs made more than ``recent_share`` of all the
    improvement since the first epoch (a loss that fell a hundredfold and now wobbles has settled), or when only
    one epoch ran (no slope to judge: one epoch is too few).

    Parameters
    ----------
    loss : sequence of float
        Training loss after each epoch, first to last.
    epochs_planned : int, optional
        Epochs that were asked for (only for the sentence).
    fast_drop : float
        Relative drop per epoch counted as fast (default 5 %).
    recent_share : float
        Share of the whole improvement the last epochs must have made (default 10 %).

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
    k = min(_WINDOW, n - 1)
    start, end = values[-k - 1], values[-1]
    # Net drop over the last k epochs, per epoch, relative to the loss's size then (losses may be negative, e.g.
    # energies); a rise counts as no drop, and noise up and down cancels.
    drop = min(max((start - end) / max(abs(start), 1e-12) / k, 0.0), 1.0)
    # ... and only while that is a real share of all the improvement so far: a loss that fell a hundredfold and
    # now moves by a few % of a tiny value has settled.
    share = (start - end) / (values[0] - end) if values[0] > end else 0.0
    return ConvergenceCheck(drop > fast_drop and share > recent_share, n, epochs_planned, drop)
