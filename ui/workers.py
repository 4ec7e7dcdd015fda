"""Heavy jobs in worker processes, so that trainings never hold the server's interpreter lock.

A Streamlit server is one Python process: every session's page reruns, the websocket traffic and
any job running in a thread share one interpreter lock. A training spends much of its time in
Python (tracing its graphs, the Keras layer calls), and while it holds the lock no session can
rerun its page. Here a job's work runs in a separate process instead:

- :class:`WorkerPool` keeps up to ``size`` worker processes (one per job slot). Each one imports
  TensorFlow once, at lower CPU priority, and runs one task at a time; it is replaced after
  ``max_tasks`` tasks, when it grows past ``max_rss_mb``, or when it dies.
- A task is a registered function of :mod:`ui.tasks`, named in the request; its inputs and outputs
  are JSON and numpy arrays. Nothing is pickled: a message is a JSON header plus ``.npy`` arrays
  read with ``allow_pickle=False``, over the worker's stdin and stdout pipes.
- While the task runs, the worker sends its progress (the engine's training events and stage
  messages); the job in the server relays them to its panel. Cancelling sends a cancel request
  (the engine stops at the next batch) and kills the worker if it has not stopped a few seconds
  later; a task past its hard deadline is killed too. A worker that dies (out of memory, a crash in
  native code) fails only its own job, with a message, and the next job gets a fresh worker.

The server uses a pool when ``LANTERN_JOB_PROCESSES=1`` (see docs/DEPLOY.md: on a 2-core host the
workers cost ~400 MB each and did not make page reruns faster, so threads are the default there).
Run as ``python -m ui.workers`` this module is the worker's main loop. It does not import streamlit.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import IO

import numpy as np

from engine import errors as engine_errors
from engine.errors import LanternError, TrainingCancelled

logger = logging.getLogger("lantern.workers")

ROOT = Path(__file__).resolve().parents[1]
_PREFIX = struct.Struct(">IQ")  # header length, arrays length
_MAX_HEADER = 16 * 1024 * 1024
_CANCEL_GRACE_S = 5.0  # after a cancel request, how long a worker may take to stop before it is killed
_POLL_S = 0.25


class WorkerError(LanternError):
    """The worker process running a job stopped, or went over the job's hard deadline."""


def process_rss_mib(pid: int | str = "self") -> float | None:
    """Resident memory of process ``pid`` in MiB, from ``/proc`` (None where it cannot be read)."""
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return None


# -- messages ----------------------------------------------------------------------------------------
def write_message(stream: IO[bytes], header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write one message: a JSON ``header`` and named numpy ``arrays`` (numeric only; nothing is pickled)."""
    arrays = arrays or {}
    body = io.BytesIO()
    for array in arrays.values():
        np.save(body, np.asarray(array), allow_pickle=False)
    head = json.dumps({**header, "arrays": list(arrays)}).encode("utf-8")
    stream.write(_PREFIX.pack(len(head), body.getbuffer().nbytes) + head)
    stream.write(body.getbuffer())
    stream.flush()


def as_message(values: dict, arrays: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """``values`` and ``arrays`` exactly as they would arrive through a pipe: JSON round-tripped, numeric arrays.

    Running a task in a thread through this makes it see what a worker would, so a parameter that cannot
    travel (a numpy scalar, a Python object) fails the same way in both modes.
    """
    arrays = {name: np.asarray(array) for name, array in (arrays or {}).items()}
    for name, array in arrays.items():
        if array.dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects; tasks take numeric arrays only")
    return json.loads(json.dumps(values)), arrays


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream: IO[bytes]) -> tuple[dict, dict[str, np.ndarray]]:
    """Read one message written by :func:`write_message`; raises ``EOFError`` when the pipe has closed."""
    head_len, body_len = _PREFIX.unpack(_read_exact(stream, _PREFIX.size))
    if head_len > _MAX_HEADER:
        raise ValueError(f"message header of {head_len} bytes is larger than allowed")
    header = json.loads(_read_exact(stream, head_len).decode("utf-8"))
    body = io.BytesIO(_read_exact(stream, body_len))
    arrays = {name: np.load(body, allow_pickle=False) for name in header.pop("arrays", [])}
    return header, arrays


# -- the server's side ---------------------------------------------------------------------------------
def _error_from(header: dict) -> LanternError:
    """The engine error a worker reported, as the same class where the engine has it."""
    cls = getattr(engine_errors, str(header.get("error_class")), None)
    if not (isinstance(cls, type) and issubclass(cls, LanternError)):
        cls = LanternError
    return cls(str(header.get("message", "the job failed.")))


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, nice: int, task_modules: tuple[str, ...], env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, **(env or {})}
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environment.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ui.workers", "--nice", str(int(nice)), "--tasks", ",".join(task_modules)],
            cwd=ROOT, env=environment,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )
        self.tasks = 0
        self.ready = False
        self.idle_since = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float | None:
        return process_rss_mib(self.pid)

    def _message(self, timeout: float) -> tuple[dict, dict] | None:
        """The next message from the worker, or None after ``timeout`` seconds without one."""
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not readable:
            if not self.alive():
                raise EOFError("the worker exited")
            return None
        return read_message(self.process.stdout)

    def wait_ready(self, timeout: float, cancel=None) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            if cancel is not None and cancel.cancelled:
                raise TrainingCancelled("Training was cancelled.")
            if time.monotonic() > deadline:
                raise WorkerError(f"a worker process did not start within {timeout:.0f} s; try again in a minute.")
            try:
                message = self._message(_POLL_S)
            except EOFError:
                raise WorkerError(f"a worker process could not start (exit code {self.process.poll()}); "
                                  "see the server log.") from None
            if message is not None and message[0].get("type") == "ready":
                self.ready = True

    def send(self, header: dict, arrays: dict | None = None) -> None:
        try:
            write_message(self.process.stdin, header, arrays)
        except OSError:
            raise WorkerError("the process for this job stopped unexpectedly; try again. Nothing else is "
                              "affected.") from None

    def run(self, job, task: str, params: dict, arrays: dict, deadline_s: float,
            cancel_grace_s: float = _CANCEL_GRACE_S) -> tuple[dict, dict]:
        """Run ``task`` and relay its progress to ``job``; returns the task's (values, arrays)."""
        from engine.training import TrainingEvent

        self.tasks += 1
        self.send({"type": "task", "task": task, "params": params}, arrays)
        started, cancel_sent, stop_sent = time.monotonic(), None, False
        while True:
            now = time.monotonic()
            if job.cancel.stop_requested and not stop_sent:  # "Stop and keep": the worker's training ends early
                self.send({"type": "stop"})
                stop_sent = True
            if job.cancel.cancelled and cancel_sent is None:
                self.send({"type": "cancel"})
                cancel_sent = now
            if cancel_sent is not None and now - cancel_sent > cancel_grace_s:
                self.kill()
                raise TrainingCancelled("Training was cancelled.")
            if now - started > deadline_s:
                self.kill()
                raise WorkerError(f"the job went over its time budget ({deadline_s:.0f} s in all) and was stopped. "
                                  "Use fewer rows, epochs or iterations.")
            try:
                message = self._message(_POLL_S)
            except (EOFError, OSError, ValueError):
                try:
                    code = self.process.wait(timeout=2)
                except subprocess.TimeoutExpired:  # the pipe broke but the process lives on: stop it
                    self.kill()
                    code = self.process.poll()
                hint = " (killed: most likely out of memory)" if code is not None and code < 0 else ""
                raise WorkerError(f"the process running this job stopped unexpectedly{hint}. Try fewer rows or a "
                                  "smaller model; nothing else is affected.") from None
            if message is None:
                continue
            header, payload = message
            kind = header.get("type")
            if kind == "progress":
                job.report(TrainingEvent(**header["event"]))
            elif kind == "stage":
                job.set_stage(header["message"], header.get("fraction"))
            elif kind == "result":
                return header.get("values", {}), payload
            elif kind == "cancelled":
                raise TrainingCancelled("Training was cancelled.")
            elif kind == "error":
                raise _error_from(header)
            elif kind == "memory":
                raise MemoryError(header.get("message", "out of memory"))

    def stop(self) -> None:
        """Ask the worker to exit (closing its stdin), then make sure it has."""
        try:
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the OS will reap with the server
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class WorkerPool:
    """Worker processes for the job manager's running jobs, started ahead and reused.

    Parameters
    ----------
    size : int
        Workers kept at most (one per job slot: the job manager admits that many jobs at once).
    nice : int
        CPU priority of the workers (10: page reruns get the CPU first).
    max_tasks : int
        Tasks one worker runs before it is replaced (bounds what TensorFlow's caches can accumulate).
    max_rss_mb : float
        A worker larger than this after a task is replaced.
    idle_recycle_s : float
        A worker that has run tasks and then sat idle this long is replaced by a fresh one, so the memory its
        tasks left behind (TensorFlow's caches, the C heap) goes back once the visitors have gone. 0: never.
    start_timeout : float
        Seconds a new worker may take to import TensorFlow and say it is ready.
    task_modules : tuple of str
        Modules whose ``TASKS`` registry a worker loads (operator-chosen, never from a request).

    Examples
    --------
    >>> pool = WorkerPool(size=1)                                  # doctest: +SKIP
    >>> values, arrays = pool.run(job, "demo.sum", {}, {"x": np.ones(3)})  # doctest: +SKIP
    """

    def __init__(self, size: int = 2, nice: int = 0, max_tasks: int = 25, max_rss_mb: float = 2048,
                 idle_recycle_s: float = 120, start_timeout: float = 180, task_modules: tuple[str, ...] = ("ui.tasks",),
                 env: dict[str, str] | None = None) -> None:
        self.size = max(1, int(size))
        self.nice = nice
        self.max_tasks = max_tasks
        self.max_rss_mb = max_rss_mb
        self.idle_recycle_s = idle_recycle_s
        self._janitor: threading.Thread | None = None
        self.start_timeout = start_timeout
        self.task_modules = tuple(task_modules)
        self.env = env
        self.cancel_grace_s = _CANCEL_GRACE_S
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self.started = 0
        self.retired = 0
        self.tasks_run = 0

    def prestart(self, n: int | None = None) -> None:
        """Start ``n`` (default: ``size``) idle workers now, so the first jobs do not wait for TensorFlow."""
        with self._lock:
            missing = min(self.size, self.size if n is None else n) - len(self._idle) - len(self._busy)
            for _ in range(max(missing, 0)):
                self._idle.append(self._new())

    def _new(self) -> _Worker:
        self.started += 1
        return _Worker(self.nice, self.task_modules, self.env)

    def _acquire(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop(0)
                if worker.alive():
                    break
                worker.kill()
            else:
                worker = self._new()
            self._busy.add(worker)
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        rss = worker.rss_mb() if healthy else None
        retire = (not healthy or not worker.alive() or worker.tasks >= self.max_tasks
                  or (rss is not None and rss > self.max_rss_mb))
        with self._lock:
            self._busy.discard(worker)
            if not retire:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                self._ensure_janitor()
        if retire:
            self.retired += 1
            worker.stop() if worker.alive() else worker.kill()
            logger.info(json.dumps({"event": "worker_retired", "pid": worker.pid, "tasks": worker.tasks,
                                    "rss_mb": None if rss is None else round(rss), "healthy": healthy}))
            if healthy:  # keep a warm worker ready for the next job
                threading.Thread(target=self.prestart, name="lantern-worker-start", daemon=True).start()

    def _ensure_janitor(self) -> None:
        if self.idle_recycle_s <= 0 or (self._janitor is not None and self._janitor.is_alive()):
            return
        self._janitor = threading.Thread(target=self._tidy_forever, name="lantern-worker-janitor", daemon=True)
        self._janitor.start()

    def _tidy_forever(self) -> None:
        while True:
            time.sleep(min(10.0, self.idle_recycle_s / 4))
            self.recycle_idle()

    def recycle_idle(self) -> int:
        """Replace the workers that ran tasks and have been idle for ``idle_recycle_s``; returns how many."""
        now = time.monotonic()
        with self._lock:
            stale = [w for w in self._idle if w.tasks > 0 and now - w.idle_since >= self.idle_recycle_s]
            self._idle = [w for w in self._idle if w not in stale]
        for worker in stale:
            self.retired += 1
            logger.info(json.dumps({"event": "worker_recycled", "pid": worker.pid, "tasks": worker.tasks,
                                    "idle_s": round(now - worker.idle_since)}))
            worker.stop()
        if stale:
            self.prestart()
        return len(stale)

    def run(self, job, task: str, params: dict, arrays: dict[str, np.ndarray], deadline_s: float) -> tuple[dict, dict]:
        """Run ``task`` for ``job`` in a worker; progress goes to ``job.report`` / ``job.set_stage``.

        Raises what the task raised (engine errors keep their class and message), ``TrainingCancelled``
        when ``job.cancel`` was set, :class:`WorkerError` when the worker died or overran ``deadline_s``.
        """
        worker = self._acquire()
        self.tasks_run += 1
        healthy = False
        try:
            worker.wait_ready(self.start_timeout, job.cancel)
            result = worker.run(job, task, params, arrays, deadline_s, self.cancel_grace_s)
            healthy = True
            return result
        except (TrainingCancelled, LanternError, MemoryError) as exc:
            # reused only if it answered and is still alive; after running out of memory it starts afresh
            healthy = worker.alive() and worker.ready and not isinstance(exc, (WorkerError, MemoryError))
            raise
        finally:
            self._release(worker, healthy)

    def pids(self) -> list[int]:
        """Process ids of the live workers (for memory accounting)."""
        with self._lock:
            return [w.pid for w in [*self._idle, *self._busy] if w.alive()]

    def close(self) -> None:
        """Stop every worker (at server exit)."""
        with self._lock:
            workers, self._idle = [*self._idle, *self._busy], []
            self._busy.clear()
        for worker in workers:
            worker.stop()


# -- the worker's side ---------------------------------------------------------------------------------
class _TaskJob:
    """What a task sees as its ``job`` in a worker: the same ``report``, ``set_stage`` and ``cancel`` as a Job."""

    def __init__(self, send) -> None:
        from engine.training import CancelToken

        self._send = send
        self.cancel = CancelToken()

    def report(self, event) -> None:
        self._send({"type": "progress", "event": asdict(event)})

    def set_stage(self, message: str, fraction: float | None = None) -> None:
        self._send({"type": "stage", "message": message, "fraction": fraction})


def serve(nice: int = 0, task_modules: tuple[str, ...] = ("ui.tasks",)) -> None:
    """The worker's main loop: run tasks of ``task_modules`` from stdin, one at a time, until stdin closes."""
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)  # before TensorFlow starts its threads, so they all inherit it
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever a library prints goes to the log, never into the message pipe
    sys.stdout = sys.stderr
    source = os.fdopen(0, "rb", buffering=0)
    write_lock = threading.Lock()

    def send(header: dict, arrays: dict | None = None) -> None:
        with write_lock:
            write_message(out, header, arrays)

    tasks: dict = {}
    for name in task_modules:  # ui.tasks imports the engine, i.e. TensorFlow
        tasks.update(importlib.import_module(name).TASKS)

    inbox: queue.Queue = queue.Queue()
    current: list[_TaskJob] = []

    def listen() -> None:
        while True:
            try:
                header, arrays = read_message(source)
            except (EOFError, OSError, ValueError):
                inbox.put(None)
                return
            if header.get("type") == "cancel":
                for job in list(current):
                    job.cancel.cancel()
            elif header.get("type") == "stop":
                for job in list(current):
                    job.cancel.stop()
            else:
                inbox.put((header, arrays))

    threading.Thread(target=listen, name="lantern-worker-inbox", daemon=True).start()
    send({"type": "ready", "pid": os.getpid()})
    while True:
        message = inbox.get()
        if message is None:
            return
        header, arrays = message
        if header.get("type") != "task":
            continue
        job = _TaskJob(send)
        current[:] = [job]
        try:
            if header.get("task") not in tasks:
                raise LanternError(f"this worker has no task {str(header.get('task'))[:80]!r}.")
            values, out_arrays = tasks[header["task"]](job, header.get("params", {}), arrays)
            send({"type": "result", "values": values}, out_arrays)
        except TrainingCancelled:
            send({"type": "cancelled"})
        except LanternError as exc:
            send({"type": "error", "error_class": type(exc).__name__, "message": str(exc)})
        except MemoryError:
            send({"type": "memory", "message": "out of memory"})
        except Exception as exc:  # a task's bug fails its job only; the worker goes on
            traceback.print_exc()
            send({"type": "error", "error_class": "LanternError",
                  "message": f"unexpected error ({type(exc).__name__}: {exc}). The job was stopped; nothing else is "
                             "affected."})
        finally:
            current.clear()
            del job, arrays


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Lantern job worker (started by the server; speaks on stdin/stdout).")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--tasks", default="ui.tasks", help="comma-separated modules with a TASKS registry")
    arguments = parser.parse_args()
    serve(arguments.nice, tuple(m for m in arguments.tasks.split(",") if m))
