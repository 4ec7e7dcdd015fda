"""Job functions on Ray: the server's jobs in Ray worker processes, on this machine or a cluster.

With ``LANTERN_RAY_ADDRESS`` set (see :func:`jobs.runner.make_backend`) the :class:`~jobs.runner.JobManager`
still admits, queues and limits jobs; once a job has its slot, :class:`RayBackend` ships its function (by
reference: a module-level function of the ``jobs`` package) and its request to a Ray task and waits for the
answer in the job's thread, relaying what the task reports:

- **Progress**: the task's ``progress`` is a :class:`RemoteProgress`. It sends the engine's training events and
  stage lines, a few times a second, to the server's :class:`JobChannel` actor (one per server, no CPU of its
  own, a bounded buffer per job); the job's thread drains them onto the :class:`~jobs.runner.Job`, so the page
  draws its live loss and progress as with threads.
- **Cancel**: the job's thread marks the job cancelled in the channel; the task's cancel token reads the mark
  when it sends progress (the engine checks it every batch) and stops. A task that ignores it for
  ``cancel_grace_s`` seconds is killed (``ray.cancel(force=True)``: its worker process ends); so is a task
  past the hard deadline (twice the time budget plus a minute).
- **Stop and keep**: the job's thread sees ``job.cancel.stop_requested`` and puts a stop mark (distinct from
  Cancel) in the channel; the task's token reads it the same way and calls ``stop()``, so the engine's training
  ends after the current batch (``history.stopped='stopped'``) and the job answers with the model learned so
  far. A stopped job is left to answer (no grace-period kill); only the hard deadline still applies.
- **Isolation**: each task runs in its own worker process (``max_calls=1``: the process exits after the job,
  so its memory goes back to the system), never retried. A worker that crashes, is killed or runs out of
  memory, or a node that leaves the cluster, fails only its own job, with a message (:class:`JobWorkerError`).
- The answer comes back copied out of Ray's object store (writable arrays, nothing pinned in the store).

This module imports Ray; :mod:`jobs.runner` imports it only when a Ray address is set. The channel actor is
defined in :mod:`jobs.channel`, which imports nothing heavy: its process stays small (no TensorFlow).
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ray

from engine.errors import LanternError, TrainingCancelled
from engine.training import CancelToken, TrainingEvent
from jobs.channel import BUFFER_ROWS as _BUFFER_ROWS
from jobs.channel import STOP, JobChannel
from jobs.runner import Job, JobWorkerError, event_row, lower_thread_priority

logger = logging.getLogger("lantern.jobs")

ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("engine", "jobs", "workflows")  # what a cluster's workers import (shipped with the job)
SYNC_S = 0.25  # how often a task sends its progress and reads the server's Cancel/Stop mark
KILLED_AFTER_CANCEL = "it did not stop after Cancel; its worker process was stopped"

__all__ = ["JobChannel", "RayBackend", "RemoteProgress", "run_job", "KILLED_AFTER_CANCEL"]


class _RemoteCancel(CancelToken):
    """The engine's cancel token inside a task: cancelled, or stopped, once the server's mark has been read."""

    def __init__(self, sync: Callable[[bool], None]) -> None:
        super().__init__()
        self._sync = sync

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set():
            self._sync(False)
        return self._event.is_set()

    @property
    def stop_requested(self) -> bool:
        if not self._stop.is_set() and not self._event.is_set():
            self._sync(False)
        return self._stop.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise TrainingCancelled("Training was cancelled.")


class RemoteProgress:
    """A job function's ``progress`` inside a Ray task (see :class:`jobs.Progress`).

    Events are buffered and sent to the :class:`~jobs.channel.JobChannel` at most every ``interval`` seconds
    (the reply carries the server's Cancel or Stop mark), so a training loop pays one small round trip a few
    times a second.
    """

    def __init__(self, channel: Any, key: str, time_budget: float | None, interval: float = SYNC_S) -> None:
        self.time_budget = time_budget
        self.cancel = _RemoteCancel(self._sync)
        self._channel, self._key, self._interval = channel, key, interval
        self._rows: list[dict] = []
        self._fraction: float | None = None
        self._message: str | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def report(self, event: TrainingEvent | dict) -> None:
        row, fraction, message = event_row(event)
        with self._lock:
            self._rows.append(row)
            if len(self._rows) > _BUFFER_ROWS:
                self._rows[: _BUFFER_ROWS // 2] = self._rows[: _BUFFER_ROWS // 2 : 2]
            self._fraction = fraction if fraction is not None else self._fraction
            self._message = message if message is not None else self._message
        self._sync(False)

    def set_stage(self, message: str, fraction: float | None = None) -> None:
        with self._lock:
            self._message = message
            self._fraction = fraction if fraction is not None else self._fraction
        self._sync(False)

    def flush(self) -> None:
        self._sync(True)

    def _sync(self, force: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self._interval:
                return
            self._last = now
            rows, fraction, message = self._rows, self._fraction, self._message
            self._rows, self._fraction, self._message = [], None, None
        try:
            mark = ray.get(self._channel.push.remote(self._key, rows, fraction, message), timeout=30)
        except Exception:  # noqa: BLE001 - the server is gone or busy: carry on; Ray ends tasks of a gone driver
            return
        if mark == STOP:
            self.cancel.stop()
        elif mark:  # CANCEL (or anything else a newer channel might say): abandon the run
            self.cancel.cancel()


def run_job(fn: Callable[[Any, Any], Any], request: Any, channel: Any, key: str, time_budget: float | None,
            nice: int, threads: int | None) -> Any:
    """The Ray task: ``fn(request, progress)`` in a worker process, at priority ``nice``, reporting to ``channel``."""
    from engine.cli.ray_backend import limit_tensorflow_threads

    lower_thread_priority(nice)
    limit_tensorflow_threads(threads)
    request = copy.deepcopy(request)  # writable arrays, as in a thread (Ray hands read-only views of its store)
    progress = RemoteProgress(channel, key, time_budget)
    try:
        return fn(request, progress)
    finally:
        progress.flush()


def _worker_runtime_env(address: str) -> dict:
    """How the workers import ``jobs`` and ``engine``: this checkout on the path (local), or shipped (cluster)."""
    if address == "local":
        paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
    return {"py_modules": [str(ROOT / name) for name in CODE_PACKAGES if (ROOT / name).is_dir()],
            "excludes": ["__pycache__", "*.pyc"]}


def _connect_from_a_lasting_thread(address: str, num_cpus: int) -> None:
    """Start or join Ray from a thread that lives as long as the process, and wait until it is up.

    A local runtime's processes (GCS, raylet) are told to die with the *thread* that started them (Linux's
    parent-death signal follows the creating thread): started from a job's or a page's thread, they would be
    killed as soon as that thread ends.
    """
    from engine.cli.ray_backend import connect

    done: dict[str, BaseException | None] = {}
    ready = threading.Event()

    def keeper() -> None:
        try:
            connect(address, num_cpus=num_cpus, runtime_env=_worker_runtime_env(address), what="LANTERN_RAY_ADDRESS")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            done["error"] = exc
            ready.set()
            return
        ready.set()
        threading.Event().wait()  # never returns: this thread must outlive every Ray process it started

    threading.Thread(target=keeper, name="lantern-ray-keeper", daemon=True).start()
    ready.wait()
    if done.get("error") is not None:
        raise done["error"]


def _task_runtime_env(address: str) -> dict:
    """The workers' environment where Ray was started by someone else (a test): ours added to each task."""
    from engine.cli.ray_backend import _QUIET_ENV

    env = _worker_runtime_env(address)
    return {**env, "env_vars": {**_QUIET_ENV, **env.get("env_vars", {})}}


class RayBackend:
    """Job functions in Ray tasks (see the module's docstring); Ray starts or is joined with the first job.

    Parameters
    ----------
    address : str
        ``'local'`` (start a Ray runtime on this machine with ``num_cpus`` CPU slots) or the address of a
        cluster's head (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``). Where Ray already runs in this process
        (a test's runtime), that one is used and left running.
    num_cpus : int
        CPU slots of a local runtime (the server's job slots); each task takes one.
    nice : int
        Scheduling priority of the tasks' processes (Linux).
    cancel_grace_s : float
        Seconds a task may take to stop after Cancel before its worker is killed (not after "Stop and keep": a
        stopped task is left to answer, within the hard deadline).
    deadline_s : float, optional
        A task still running this many seconds after it started is killed.
    poll_s : float
        How often the job's thread drains the task's progress.
    """

    name = "ray"

    def __init__(self, address: str, *, num_cpus: int = 2, nice: int = 0, cancel_grace_s: float = 5.0,
                 deadline_s: float | None = None, poll_s: float = SYNC_S) -> None:
        self.address = address
        self.num_cpus = max(1, int(num_cpus))
        self.nice = nice
        self.cancel_grace_s = cancel_grace_s
        self.deadline_s = deadline_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._owns_runtime = False
        self._channel: Any = None
        self._task: Any = None
        self._keys = itertools.count(1)

    # -- start-up ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start or join Ray and create the progress channel (once; the first job does it if nobody did)."""
        with self._lock:
            if self._channel is not None:
                return
            if not ray.is_initialized():
                _connect_from_a_lasting_thread(self.address, self.num_cpus)
                self._owns_runtime = True
            env = None if self._owns_runtime else _task_runtime_env(self.address)
            task = ray.remote(num_cpus=1, max_calls=1, max_retries=0, retry_exceptions=False)(run_job)
            self._task = task.options(runtime_env=env) if env else task
            channel = ray.remote(JobChannel).options(num_cpus=0, max_restarts=0, **({"runtime_env": env} if env else {}))
            self._channel = channel.remote()
            logger.info('{"event": "ray_started", "address": "%s"}', self.address)

    def prestart(self) -> None:
        """Start Ray in the background (a server calls this at start-up, so the first job need not wait)."""
        def start() -> None:
            try:
                self.start()
            except Exception:  # noqa: BLE001 - the first job will try again and report what is wrong
                logger.exception("could not start Ray")

        threading.Thread(target=start, name="lantern-ray-start", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._channel = self._task = None
            if self._owns_runtime and ray.is_initialized():
                ray.shutdown()
            self._owns_runtime = False

    # -- one job ---------------------------------------------------------------------------------
    def run(self, job: Job, fn: Callable[[Any, Any], Any], request: Any) -> Any:
        try:
            self.start()
        except LanternError:
            raise
        except Exception as exc:  # noqa: BLE001
            from engine.cli.io import UsageError

            if isinstance(exc, UsageError):  # a wrong LANTERN_RAY_ADDRESS: the message says what to do
                raise JobWorkerError(str(exc)) from exc
            raise JobWorkerError(f"the job could not start on Ray ({type(exc).__name__}: {exc}).") from exc
        channel, task = self._channel, self._task
        key = f"{os.getpid()}-{next(self._keys)}"
        threads = None
        if self.address == "local":
            threads = max(1, (os.cpu_count() or 1) // self.num_cpus)
        try:
            ray.get(channel.open.remote(key), timeout=60)
        except Exception as exc:  # noqa: BLE001 - the channel died: the next job makes a new one
            self._forget_channel(channel)
            raise JobWorkerError(f"the job could not start on Ray: its progress channel is gone ({type(exc).__name__}).") from exc
        ref = task.remote(fn, request, channel, key, job.time_budget, self.nice, threads)
        killed = None
        try:
            started, cancel_sent, stop_sent = time.monotonic(), None, False
            while True:
                ready, _ = ray.wait([ref], timeout=self.poll_s)
                self._drain(channel, key, job)
                if ready:
                    break
                now = time.monotonic()
                if job.cancel.cancelled and cancel_sent is None:
                    channel.cancel.remote(key)
                    cancel_sent = now
                elif job.cancel.stop_requested and not stop_sent and cancel_sent is None:
                    channel.stop.remote(key)  # ends training after the current batch; the job then answers
                    stop_sent = True
                    logger.info('{"event": "stop_sent", "job": %d}', job.id)
                if killed is None and cancel_sent is not None and now - cancel_sent > self.cancel_grace_s:
                    killed = "cancel"
                    job.set_stage(KILLED_AFTER_CANCEL)
                    ray.cancel(ref, force=True)
                    logger.info('{"event": "killed", "job": %d, "why": "ignored cancel"}', job.id)
                if killed is None and self.deadline_s is not None and now - started > self.deadline_s:
                    killed = "deadline"
                    ray.cancel(ref, force=True)
                    logger.info('{"event": "killed", "job": %d, "why": "deadline"}', job.id)
            return self._answer(ref, killed)
        finally:
            channel.forget.remote(key)

    def _forget_channel(self, channel: Any) -> None:
        with self._lock:
            if self._channel is channel:
                self._channel = None

    def _drain(self, channel: Any, key: str, job: Job) -> None:
        try:
            rows, fraction, message = ray.get(channel.drain.remote(key), timeout=30)
        except ray.exceptions.GetTimeoutError:
            return
        except ray.exceptions.RayActorError:
            self._forget_channel(channel)
            return
        for row in rows:
            job.record(row)
        if fraction is not None:
            job.fraction = float(fraction)
        if message is not None:
            job.message = str(message)

    def _answer(self, ref: Any, killed: str | None) -> Any:
        """The task's answer, copied out of the object store; or the job's failure, as the runner expects it."""
        try:
            return copy.deepcopy(ray.get(ref))
        except ray.exceptions.RayTaskError as exc:  # the job function raised: the same error as in a thread
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise JobWorkerError(f"the job failed on Ray ({_first_line(exc)}).") from None
        except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError) as exc:
            if killed == "cancel":
                raise TrainingCancelled("the job ignored Cancel; its worker process was stopped.") from None
            if killed == "deadline":
                raise JobWorkerError(f"the job ran past the server's hard limit ({self.deadline_s:.0f} s) and its "
                                     "worker process was stopped. Use fewer rows, epochs or iterations.") from None
            if isinstance(exc, ray.exceptions.TaskCancelledError):
                raise JobWorkerError("the job was stopped on Ray before it answered.") from None
            raise JobWorkerError("the worker process running the job stopped unexpectedly (it crashed or was "
                                 "killed); nothing else is affected. Start it again, with fewer rows or a smaller "
                                 "model if it happens again.") from None
        except ray.exceptions.OutOfMemoryError:
            raise JobWorkerError("the job ran out of memory and its worker process was stopped; use fewer rows or "
                                 "a smaller model.") from None
        except ray.exceptions.NodeDiedError:
            raise JobWorkerError("the machine running the job left the Ray cluster; start the job again.") from None
        except ray.exceptions.RayError as exc:
            raise JobWorkerError(f"the job failed on Ray ({type(exc).__name__}: {_first_line(exc)}).") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
