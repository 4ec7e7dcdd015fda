"""What the job tests share: a recording ``progress`` for job functions, a bounded wait, a cancellable job."""

from __future__ import annotations

import time

from engine.training import CancelToken

TIMEOUT = 20  # generous upper bound for a loaded CI machine; tests finish far sooner


class RecordingProgress:
    """A job function's ``progress`` (see :class:`jobs.Progress`) that keeps what the job reported."""

    def __init__(self, time_budget: float | None = None) -> None:
        self.cancel, self.time_budget, self.events, self.stages = CancelToken(), time_budget, [], []

    def report(self, event) -> None:
        self.events.append(event)

    def set_stage(self, message: str, fraction: float | None = None) -> None:
        self.stages.append(message)


def wait_until(predicate, timeout: float = TIMEOUT, every: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds have passed (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def cancellable(job) -> str:
    """A job that works in small steps and honours its cancel token, like the engine's training loop."""
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        job.cancel.raise_if_cancelled()
        time.sleep(0.01)
    return "ran to the end"
