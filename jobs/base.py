"""The contract between a job function and whatever runs it.

Light on purpose (the engine's types are named for type checkers only): every process that imports a module of
the ``jobs`` package imports this one, including the Ray channel's actor (:mod:`jobs.channel`), which must not
pay for TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

if TYPE_CHECKING:
    from engine.training import CancelToken, TrainingEvent

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class Progress(Protocol):
    """What a running job can tell its runner, and ask of it.

    Attributes
    ----------
    cancel : CancelToken
        Set when the visitor pressed Cancel (or left), or asked to stop and keep the model (``stop()``); pass it
        to the engine's ``fit``/``explain``.
    time_budget : float or None
        Seconds the server gives one job; pass it to the engine's ``fit``.
    """

    cancel: CancelToken
    time_budget: float | None

    def report(self, event: TrainingEvent | dict) -> None:
        """Record a training event (the engine's ``progress`` callback) or a dict with ``fraction``/``message``."""

    def set_stage(self, message: str, fraction: float | None = None) -> None:
        """Say what the job is doing now."""


JobFn = Callable[[Any, Progress], Any]
