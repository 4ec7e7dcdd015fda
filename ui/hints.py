"""Hints next to results: e.g. training stopped while the loss was still falling fast.

Usage in a page, after a training job's results::

    hints.convergence(run.loss, epochs_planned=run.epochs)

with a :class:`engine.training.TrainingHistory` (e.g. a classifier's), saying which model it is::

    hints.convergence(hints.history_loss(run.history), model="classifier")

or for the latest finished job under a key, from its progress events (``job.events``, one
``{'kind': 'epoch', 'loss': …}`` per epoch; a scoring job has none and gets no hint)::

    hints.job_convergence("aegmm")
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import streamlit as st

from engine.convergence import ConvergenceCheck, check_convergence
from ui import training

# What an unfinished model means for each kind of model a page trains ("detector": the engine's own sentence).
CONSEQUENCES = {
    "classifier": "the classifier has not finished learning its classes, so its accuracy, the attack's success and "
                  "the detector built on it may all change with more training. Train for more epochs (or a larger "
                  "learning rate) until the loss flattens.",
    "explained classifier": "the classifier has not finished learning its classes, so its predictions, and the "
                            "explanations of them, may change with more training. Train for more epochs (or a larger "
                            "learning rate) until the loss flattens.",
    "autoencoder": "the autoencoder still reconstructs rows poorly, so the gamma term pulls explanations towards a "
                   "rough picture of the data. Train it for more epochs until the loss flattens, or set gamma to 0.",
    "distilled": "the distilled model has not finished copying the classifier, so the two models also disagree on "
                 "clean rows: the detector's scores on clean and attacked rows overlap and it raises more false "
                 "alarms. Distil for more epochs (or a larger learning rate) until the loss flattens.",
}
_NAMES = {"classifier": "Classifier", "explained classifier": "Classifier", "autoencoder": "Autoencoder",
          "distilled": "Distilled model"}


def epoch_losses(events: Iterable[dict]) -> list[float]:
    """The loss after each epoch from a job's progress events (the engine's epoch events, in order)."""
    return [float(e["loss"]) for e in events if e.get("kind") == "epoch" and e.get("loss") is not None]


def history_loss(history: Any) -> list[float]:
    """The per-epoch losses of an :class:`engine.training.TrainingHistory` ([] for None: nothing was trained)."""
    return [] if history is None else [float(v) for v in getattr(history, "loss", [])]


def sentence(check: ConvergenceCheck, model: str = "detector") -> str:
    """The hint for ``check`` in plain words, saying what it means for ``model`` ('' when the loss had flattened).

    ``model`` is 'detector' (an outlier detector: the engine's sentence), 'classifier' (attacked and distilled),
    'explained classifier' (explained by CEM), 'autoencoder' (CEM's gamma term) or 'distilled'.
    """
    if not check.still_falling:
        return ""
    if model not in CONSEQUENCES:
        return check.sentence()
    of = f" of {check.epochs_planned}" if check.epochs_planned else ""
    if check.drop_per_epoch is None:
        what = f"training stopped after epoch {check.epochs_run}{of}, too early to tell whether the loss had settled"
    else:
        what = (f"the loss was still falling fast when training stopped at epoch {check.epochs_run}{of} "
                f"(down {100 * check.drop_per_epoch:.0f} % per epoch over the last epochs)")
    return f"{_NAMES[model]}: {what}: {CONSEQUENCES[model]}"


def convergence(loss: Sequence[float], epochs_planned: int | None = None, *, model: str = "detector") -> bool:
    """Show a warning when training stopped while the loss was still falling fast; returns whether it showed.

    Nothing is shown for an empty history (a detector that was loaded, or a model that was uploaded, not trained).
    """
    check = check_convergence(loss, epochs_planned)
    if not check.still_falling:
        return False
    st.warning(sentence(check, model), icon=":material/trending_down:")
    return True


def job_convergence(key: str, *, model: str = "detector") -> bool:
    """:func:`convergence` for the latest finished job under ``key`` (the one whose results are shown)."""
    job = training.latest(key)
    if job is None or job.kind != "train":
        return False
    return convergence(epoch_losses(job.events), model=model)
