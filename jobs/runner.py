"""The job runner: heavy work runs as jobs behind one global admission limit, on a backend.

A :class:`Job` waits in the :class:`JobManager`'s queue until a slot is free (it knows its position), then its
work runs; the engine's progress events are collected on the job so a page can draw them live, and cancelling
sets the engine's :class:`~engine.training.CancelToken`. Jobs whose browser session has gone are cancelled by
a watchdog, freeing their slot.

Where a job function ``fn(request, progress)`` (see :mod:`jobs`) runs is the backend's business:

- :class:`ThreadBackend` (the default): in the job's own thread of the server; ``progress`` is the job itself.
- :class:`jobs.ray_backend.RayBackend` (``LANTERN_RAY_ADDRESS=local`` or a cluster address): in a Ray worker
  process, with the same progress, Cancel, time budget, queue and limits (see :func:`make_backend`).

Admission, queue position, per-session limits, the watchdog and the event log are the manager's, the same for
every backend. This module does not import streamlit (the app passes a session-liveness check in) nor Ray.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from engine.errors import LanternError, TrainingCancelled
from engine.training import CancelToken, TrainingEvent

logger = logging.getLogger("lantern.jobs")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
MAX_EVENTS = 4_000


def lower_thread_priority(nice: int) -> bool:
    """Give the calling thread (and the threads it starts from now on) the scheduling priority ``nice`` (Linux).

    On Linux, ``setpriority`` on a thread id changes that thread only, and new threads inherit it. Returns
    whether it took effect; elsewhere, or without permission, nothing changes.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        return False
    return True


def event_row(event: TrainingEvent | dict) -> tuple[dict, float | None, str | None]:
    """A progress event as (the row kept for the loss chart, the fraction done, the message), None where unchanged.

    Examples
    --------
    >>> event_row({"fraction": 0.5, "message": "scoring"})
    ({'fraction': 0.5, 'message': 'scoring'}, 0.5, 'scoring')
    """
    if isinstance(event, TrainingEvent):
        row = {"kind": event.kind, "epoch": event.epoch, "step": event.step,
               "global_step": (event.epoch - 1) * event.steps_per_epoch + event.step,
               "loss": event.loss, **event.metrics}
        return row, event.fraction_done, f"epoch {event.epoch}/{event.epochs} · loss {event.loss:.4g}"
    row = dict(event)
    fraction = float(row["fraction"]) if "fraction" in row else None
    message = str(row["message"]) if "message" in row else None
    return row, fraction, message


class JobLimitError(LanternError):
    """The session already runs its share of jobs, or the queue is full."""


class JobWorkerError(LanternError):
    """The process or machine running a job stopped (crashed, ran out of memory, was killed) before it answered."""


@dataclass
class Job:
    """One unit of heavy work owned by one browser session.

    ``fn(job)`` does the work (for a job function, the backend runs ``fn(request, progress)``); the job is the
    ``progress`` of a job running in a thread: ``job.report`` is the engine's ``progress`` callback and
    ``job.cancel`` its cancel token. What ``fn`` returns is kept in ``job.result``.
    """

    id: int
    owner: str
    label: str
    kind: str
    fn: Callable[[Job], Any]
    state: str = QUEUED
    result: Any = None
    error: str | None = None
    events: list[dict] = field(default_factory=list)
    fraction: float = 0.0
    message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    time_budget: float | None = None  # seconds the server gives the job (the engine's ``fit(time_budget=...)``)
    context: Any = None  # what the page keeps next to the job (never sent to where the job runs)
    view: Any = None  # the page's view of the answer, built once in the page's thread (see ui.training.outcome)
    where: str = "thread"  # the backend that ran it ("thread" or "ray")

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    def report(self, event: TrainingEvent | dict) -> None:
        """Record a progress event (an engine ``TrainingEvent`` or a plain dict with ``fraction``)."""
        self.record(*event_row(event))

    def record(self, row: dict, fraction: float | None = None, message: str | None = None) -> None:
        """Keep one progress row (see :func:`event_row`); the events kept stay bounded."""
        if fraction is not None:
            self.fraction = float(fraction)
        if message is not None:
            self.message = str(message)
        self.events.append(row)
        if len(self.events) > MAX_EVENTS:  # keep memory bounded: thin out the older half
            self.events[: MAX_EVENTS // 2] = self.events[: MAX_EVENTS // 2 : 2]

    def set_stage(self, message: str, fraction: float | None = None) -> None:
        """Say what the job is doing now, for steps that are not training epochs."""
        self.message = message
        if fraction is not None:
            self.fraction = fraction

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


class Backend(Protocol):
    """Where job functions run: ``run(job, fn, request)`` returns ``fn``'s answer or raises what stopped it."""

    name: str

    def run(self, job: Job, fn: Callable[[Any, Any], Any], request: Any) -> Any: ...

    def close(self) -> None: ...


class ThreadBackend:
    """Job functions run in the job's own thread of the server; the job is their ``progress``."""

    name = "thread"

    def run(self, job: Job, fn: Callable[[Any, Any], Any], request: Any) -> Any:
        return fn(request, job)

    def close(self) -> None:
        pass


def make_backend(address: str | None = None, *, max_concurrent: int = 2, nice: int = 0,
                 time_budget_s: float | None = None) -> Backend:
    """The backend for ``address``: threads when it is empty, else Ray (``'local'`` or a cluster's address).

    Ray is imported, and its runtime started or joined, only when the first job runs on it.
    """
    if not address:
        return ThreadBackend()
    from jobs.ray_backend import RayBackend

    deadline = None if time_budget_s is None else 2 * time_budget_s + 60
    return RayBackend(address, num_cpus=max_concurrent, nice=nice, deadline_s=deadline)


class JobManager:
    """Admits at most ``max_concurrent`` jobs at a time, in arrival order.

    Parameters
    ----------
    max_concurrent : int
        Jobs running at once across all sessions (sized to the machine's cores, or to the Ray cluster).
    max_per_session : int
        Jobs one session may have queued or running at once.
    max_queue : int
        Jobs waiting at once across all sessions; beyond that, new jobs are refused.
    is_owner_alive : callable, optional
        ``is_owner_alive(owner) -> bool``; jobs of a dead owner are cancelled by the watchdog.
    watchdog_interval : float
        Seconds between two checks of the owners.
    nice : int
        Scheduling priority of the threads running jobs (0: unchanged; 10: interactive page reruns of every
        session get the CPU before the jobs do). Linux only; ignored elsewhere.
    backend : Backend, optional
        Where job functions (:meth:`submit_job`) run; threads of this process by default.

    Examples
    --------
    >>> manager = JobManager(max_concurrent=1)
    >>> job = manager.submit('session-1', 'demo', lambda job: 42)
    >>> manager.wait(job, timeout=5).result
    42
    >>> def double(request, progress):
    ...     return 2 * request
    >>> manager.wait(manager.submit_job('session-1', 'double', double, 21), timeout=5).result
    42
    """

    def __init__(self, max_concurrent: int = 2, max_per_session: int = 2, max_queue: int = 32,
                 is_owner_alive: Callable[[str], bool] | None = None, watchdog_interval: float = 2.0,
                 nice: int = 0, backend: Backend | None = None):
        self.max_concurrent = max_concurrent
        self.max_per_session = max_per_session
        self.max_queue = max_queue
        self.is_owner_alive = is_owner_alive
        self.nice = nice
        self.backend: Backend = backend if backend is not None else ThreadBackend()
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._running: list[Job] = []
        self._queue: list[Job] = []
        self.completed = {DONE: 0, FAILED: 0, CANCELLED: 0}
        self.rejected = 0
        self._watchdog_interval = watchdog_interval
        self._watchdog: threading.Thread | None = None

    # -- submission ------------------------------------------------------------------------
    def submit(self, owner: str, label: str, fn: Callable[[Job], Any], kind: str = "train") -> Job:
        """Queue ``fn(job)`` for ``owner``, to run in a thread of this process.

        Raises :class:`JobLimitError` when a limit is reached. Job functions go through :meth:`submit_job`.
        """
        with self._lock:
            mine = [j for j in self._running + self._queue if j.owner == owner]
            if len(mine) >= self.max_per_session:
                self.rejected += 1
                raise JobLimitError(
                    f"you already have {len(mine)} job(s) running or queued ({', '.join(j.label for j in mine)}); "
                    "wait for one to finish or cancel it."
                )
            if len(self._queue) >= self.max_queue:
                self.rejected += 1
                raise JobLimitError("the server is busy: too many jobs are waiting. Try again in a minute.")
            job = Job(id=next(self._ids), owner=owner, label=label, kind=kind, fn=fn)
            self._queue.append(job)
            self._log("queued", job)
            self._ensure_watchdog()
        threading.Thread(target=self._run, args=(job,), name=f"lantern-job-{job.id}", daemon=True).start()
        return job

    def submit_job(self, owner: str, label: str, fn: Callable[[Any, Any], Any], request: Any, *,
                   kind: str = "train", time_budget: float | None = None, context: Any = None) -> Job:
        """Queue the job function ``fn(request, progress)`` for ``owner``; it runs on the manager's backend.

        ``fn`` must be a module-level function (it is passed by reference to where the job runs) and
        ``request``/its answer plain values; ``context`` stays with the job here. Raises :class:`JobLimitError`
        when a limit is reached.
        """
        backend = self.backend

        def run(job: Job) -> Any:
            job.time_budget = time_budget
            job.where = backend.name
            return backend.run(job, fn, request)

        job = self.submit(owner, label, run, kind=kind)
        job.context = context
        return job

    def queue_position(self, job: Job) -> int:
        """1-based position among waiting jobs, 0 when running or finished."""
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else 0

    def cancel(self, job: Job) -> None:
        """Ask ``job`` to stop; a queued job leaves the queue at once."""
        job.cancel.cancel()
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, CANCELLED)
                self._lock.notify_all()

    def cancel_owner(self, owner: str) -> int:
        """Cancel every job of ``owner``; returns how many were active."""
        with self._lock:
            jobs = [j for j in self._running + self._queue if j.owner == owner]
        for job in jobs:
            self.cancel(job)
        return len(jobs)

    def stats(self) -> dict:
        with self._lock:
            return {"running": len(self._running), "queued": len(self._queue), "rejected": self.rejected,
                    **self.completed}

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        """Block until ``job`` has finished (for tests and scripts)."""
        deadline = None if timeout is None else time.time() + timeout
        with self._lock:
            while job.active:
                remaining = None if deadline is None else deadline - time.time()
                if remaining is not None and remaining <= 0:
                    break
                self._lock.wait(timeout=0.1 if remaining is None else min(remaining, 0.1))
        return job

    def close(self) -> None:
        """Cancel every job and let the backend go (a Ray runtime this manager started is shut down)."""
        with self._lock:
            jobs = list(self._running + self._queue)
        for job in jobs:
            self.cancel(job)
        self.backend.close()

    # -- execution ---------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        with self._lock:
            while job in self._queue and (self._queue[0] is not job or len(self._running) >= self.max_concurrent):
                self._lock.wait(timeout=0.5)
            if job not in self._queue:  # cancelled while queued
                return
            self._queue.remove(job)
            self._running.append(job)
            job.state = RUNNING
            job.started = time.time()
            self._log("started", job, queue_wait_s=round(job.started - job.created, 3))
            self._lock.notify_all()
        lower_thread_priority(self.nice)  # jobs yield the CPU to page reruns (this thread ends with the job)
        outcome = DONE
        try:
            job.result = job.fn(job)
            if job.cancel.cancelled:
                outcome = CANCELLED
        except TrainingCancelled:
            outcome = CANCELLED
        except LanternError as exc:
            outcome, job.error = FAILED, str(exc)
        except MemoryError:
            outcome, job.error = FAILED, "the job ran out of memory; use fewer rows or a smaller model."
        except BaseException as exc:  # never let one job's bug (even SystemExit) hold a slot or reach anyone else
            outcome = FAILED
            job.error = f"unexpected error ({type(exc).__name__}: {exc}). The job was stopped; nothing else is affected."
            logger.error("job %s failed:\n%s", job.id, traceback.format_exc())
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            self._finish(job, outcome)
            self._lock.notify_all()

    def _finish(self, job: Job, outcome: str) -> None:
        job.state = outcome
        job.finished = time.time()
        if outcome == CANCELLED and job.result is not None:
            job.result = None
        self.completed[outcome] += 1
        self._log("finished", job, outcome=outcome, duration_s=None if job.started is None else round(job.finished - job.started, 3),
                  error=job.error)

    def _log(self, event: str, job: Job, **extra) -> None:
        record = {"event": event, "job": job.id, "kind": job.kind, "label": job.label, "owner": job.owner[:8],
                  "where": job.where, **extra}
        logger.info(json.dumps(record, default=str))

    # -- watchdog ----------------------------------------------------------------------------
    def _ensure_watchdog(self) -> None:
        if self.is_owner_alive is None or (self._watchdog is not None and self._watchdog.is_alive()):
            return
        self._watchdog = threading.Thread(target=self._watch, name="lantern-job-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        while True:
            time.sleep(self._watchdog_interval)
            self._cancel_orphans()

    def _cancel_orphans(self) -> None:
        """Cancel the active jobs whose owner has gone.

        A method of its own so that no job stays referenced from the watchdog's frame while it sleeps: a
        loop variable left there would keep the last job checked (and everything its result holds) alive.
        """
        with self._lock:
            jobs = list(self._running + self._queue)
        for job in jobs:
            try:
                alive = self.is_owner_alive(job.owner)
            except Exception:  # a liveness probe must never take the watchdog down
                alive = True
            if not alive:
                self._log("owner_gone", job)
                self.cancel(job)
