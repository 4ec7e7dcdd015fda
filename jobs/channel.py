"""The Ray actor between the server and its jobs' Ray tasks: progress one way, Cancel and Stop marks the other.

This module is what the channel's actor process imports, so it imports the standard library only: no Ray, no
engine, no TensorFlow (the actor then holds tens of MiB, not the ~700 MiB a TensorFlow import costs). Keep it
that way; ``tests/ray/test_stop_on_ray.py`` checks it.
"""

from __future__ import annotations

import collections

BUFFER_ROWS = 2_000  # progress rows a task or the channel holds for one job before thinning the older ones

CANCEL = "cancel"  # abandon the run (the engine raises TrainingCancelled at the next batch)
STOP = "stop"  # stop early and keep the model learned so far (the engine ends training after the current batch)


class JobChannel:
    """Each running job's progress on its way to the server, and the server's Cancel and Stop marks.

    A plain class; :class:`jobs.ray_backend.RayBackend` makes it a Ray actor (one per server, no CPU of its own).

    Examples
    --------
    >>> channel = JobChannel()
    >>> channel.open("job-1")
    >>> channel.push("job-1", [{"loss": 1.0}], 0.5, "epoch 1/2") is None
    True
    >>> channel.stop("job-1")
    >>> channel.push("job-1", [], None, None)
    'stop'
    >>> channel.drain("job-1")
    ([{'loss': 1.0}], 0.5, 'epoch 1/2')
    >>> channel.cancel("job-1")
    >>> channel.push("job-1", [], None, None)
    'cancel'
    """

    def __init__(self) -> None:
        self._jobs: dict[str, dict] = {}

    def open(self, key: str) -> None:
        self._jobs[key] = {"rows": collections.deque(maxlen=BUFFER_ROWS), "fraction": None, "message": None,
                           "mark": None}

    def push(self, key: str, rows: list[dict], fraction: float | None, message: str | None) -> str | None:
        """Keep a task's progress; answers the server's mark for the job: :data:`CANCEL`, :data:`STOP` or None.

        A job the server has forgotten (it ended, or the server restarted its channel) reads :data:`CANCEL`.
        """
        state = self._jobs.get(key)
        if state is None:
            return CANCEL
        state["rows"].extend(rows)
        if fraction is not None:
            state["fraction"] = fraction
        if message is not None:
            state["message"] = message
        return state["mark"]

    def drain(self, key: str) -> tuple[list[dict], float | None, str | None]:
        """What the task reported since the last drain: rows, and the latest fraction and message (or None)."""
        state = self._jobs.get(key)
        if state is None:
            return [], None, None
        rows = list(state["rows"])
        state["rows"].clear()
        fraction, message = state["fraction"], state["message"]
        state["fraction"] = state["message"] = None
        return rows, fraction, message

    def cancel(self, key: str) -> None:
        """Mark the job cancelled (this mark wins over a Stop)."""
        if key in self._jobs:
            self._jobs[key]["mark"] = CANCEL

    def stop(self, key: str) -> None:
        """Ask the job to stop early and keep what it learned (ignored once it is cancelled)."""
        if key in self._jobs and self._jobs[key]["mark"] is None:
            self._jobs[key]["mark"] = STOP

    def forget(self, key: str) -> None:
        self._jobs.pop(key, None)

    def size(self) -> int:
        return len(self._jobs)
