"""Hints next to results: e.g. training stopped while the loss was still falling fast.

Usage in a page, after a training job's results::

    hints.convergence(run.loss, epochs_planned=run.epochs)

or with the job's live events (``job.events``, one ``{'kind': 'epoch', 'loss': …}`` per epoch)::

    hints.convergence(hints.epoch_losses(job.events))
"""

from __future__ import annotations

from typing import Iterable, Sequence

import streamlit as st

from engine.convergence import check_convergence


def epoch_losses(events: Iterable[dict]) -> list[float]:
    """The loss after each epoch from a job's progress events (the engine's epoch events, in order)."""
    return [float(e["loss"]) for e in events if e.get("kind") == "epoch" and e.get("loss") is not None]


def convergence(loss: Sequence[float], epochs_planned: int | None = None) -> bool:
    """Show a warning when training stopped while the loss was still falling fast; returns whether it showed.

    Nothing is shown for an empty history (a detector that was loaded, not trained).
    """
    check = check_convergence(loss, epochs_planned)
    if not check.still_falling:
        return False
    st.warning(check.sentence(), icon=":material/trending_down:")
    return True
