"""The server's start-up (:func:`bootstrap`), its job manager (:func:`manager`) and the session's identity.

Importing this module changes nothing: ``app.py`` calls :func:`bootstrap` once per server process (Streamlit
patches, logging, TensorFlow's thread priority, the garbage collector's freeze and the memory release thread,
the job manager and its backend). Pages and widgets only call :func:`manager`, which creates the manager on
first use, so a page run on its own (an AppTest) works too.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from jobs.runner import Job, JobManager, lower_thread_priority, make_backend
from ui import settings


def _keep_keras_state_between_reruns() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit does this by default (``_clean_problem_modules``). In a server where jobs train in
    background threads it resets TensorFlow's default graph and kernel caches and runs a full
    garbage collection under those jobs, every time any session reruns — twice a second while a
    progress panel refreshes. Lantern keeps no Keras state that needs clearing between reruns
    (every model belongs to a job or a session), so the clean-up is switched off here, once per
    process.
    """
    from streamlit.runtime.scriptrunner import script_runner as _script_runner

    if getattr(_script_runner, "_lantern_patched", False):
        return
    _script_runner._clean_problem_modules = lambda: None
    _script_runner._lantern_patched = True


def _keep_generated_downloads_for_their_session() -> None:
    """Keep a file made by a deferred download button until its own session runs again.

    Every download button here generates its file on click (``data=callable``). Streamlit (1.67) stores the
    generated file unreferenced, and the orphan clean-up at the end of *any* session's script run marks it, the
    next one deletes it. On a busy server (job panels of other sessions rerun twice a second) the file is often
    gone before the browser fetches it, and the download fails ("canceled"). Here the generated file is referenced
    by the session whose button made it, like a file passed as bytes: it lives until that session's next full
    run or its end. If Streamlit's internals differ from what this expects, nothing is patched.
    """
    import os.path

    from streamlit.runtime.media_file_manager import MediaFileManager

    original = getattr(MediaFileManager, "execute_deferred", None)
    if original is None or getattr(MediaFileManager, "_lantern_patched", False):
        return

    def execute_deferred(self, file_id: str) -> str:
        url = original(self, file_id)
        try:
            with self._lock:
                entry = self._deferred_callables.get(file_id)
                generated = os.path.splitext(url.rsplit("/", 1)[-1])[0]
                if entry is not None and generated in self._file_metadata:
                    by_coord = self._files_by_session_and_coord[entry["session_id"]]
                    by_coord[f"{entry['coordinates']}#generated"] = generated
        except (AttributeError, KeyError, TypeError):  # internals changed: keep Streamlit's own behaviour
            pass
        return url

    MediaFileManager.execute_deferred = execute_deferred
    MediaFileManager._lantern_patched = True


def _configure_logging() -> None:
    """Job logs (one JSON object per line) go to stderr under the 'lantern' logger."""
    logger = logging.getLogger("lantern")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def session_id() -> str:
    """The id of the browser session running this script ('local' outside a session)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def session_is_alive(owner: str) -> bool:
    """Whether ``owner``'s browser session is still connected (always true without a server)."""
    if owner == "local" or not Runtime.exists():
        return True
    return Runtime.instance().is_active_session(owner)


def process_rss_mib(pid: int | str = "self") -> float | None:
    """Resident memory of process ``pid`` in MiB, from ``/proc`` (None where it cannot be read)."""
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return None


def rss_mib() -> float:
    """This process's resident memory in MiB (-1 where ``/proc`` is not available)."""
    rss = process_rss_mib()
    return -1.0 if rss is None else rss


def _memory_census() -> dict:
    """What the server holds: RSS, live Streamlit sessions, Keras models, Lantern job results (costly: walks the heap)."""
    import keras
    from streamlit.runtime.app_session import AppSession

    counts = {"app_sessions": 0, "keras_models": 0, "jobs": 0}
    for obj in gc.get_objects():
        if isinstance(obj, AppSession):
            counts["app_sessions"] += 1
        elif isinstance(obj, keras.Model):
            counts["keras_models"] += 1
        elif isinstance(obj, Job):
            counts["jobs"] += 1
    return {"event": "memory", "rss_mib": round(rss_mib(), 1), **counts}


def _start_memory_log(interval: float) -> None:
    """With ``LANTERN_MEMORY_LOG_S`` set, log a :func:`_memory_census` line every that many seconds (diagnostics)."""
    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                logging.getLogger("lantern.memory").info(json.dumps(_memory_census()))
            except Exception:  # diagnostics must never take the server down
                pass

    threading.Thread(target=loop, name="lantern-memory-log", daemon=True).start()


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory() -> bool:
    """Free what ended sessions left behind and hand it back to the operating system.

    A session's data, detectors and charts form reference cycles, which Python frees only at its next
    full collection; and glibc keeps the pages it frees for later allocations, so the server's RSS would
    stay at its peak although nothing holds that memory. This runs a collection (cheap once the startup
    objects are frozen, see :func:`_freeze_startup_objects`) and ``malloc_trim(0)`` (a few ms). Returns
    whether the C library could give pages back (glibc only).
    """
    gc.collect()
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def _start_memory_release(interval: float) -> None:
    """Every ``interval`` seconds, :func:`release_free_memory` (``LANTERN_MEMORY_RELEASE_S``)."""
    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                release_free_memory()
            except Exception:  # upkeep must never take the server down
                pass

    threading.Thread(target=loop, name="lantern-memory-release", daemon=True).start()


def _freeze_startup_objects() -> None:
    """Move everything alive now (modules, TensorFlow, Keras, Plotly: ~450,000 objects) out of the collector's view.

    They live as long as the server, yet every full garbage collection would walk them again: ~300 ms
    holding the interpreter lock, during which no session's page can rerun. Frozen, a collection only
    walks what was made since, i.e. what sessions and jobs hold.
    """
    gc.collect()
    gc.freeze()


def _start_tensorflow_at_low_priority(nice: int) -> None:
    """Create TensorFlow's compute thread pools from a thread of priority ``nice``, so that they inherit it.

    The pools are made once per process, by whichever thread runs the first TensorFlow operation, and every
    training runs its kernels on them. Created here, before any page runs an operation, they yield the CPU to
    the server's own threads: a slider move in one session is drawn before another session's training gets
    the next slice of CPU. Does nothing if the runtime has already been started (then its pools keep the
    priority they have) or ``nice`` is 0.
    """
    if nice <= 0:
        return

    def start() -> None:
        if lower_thread_priority(nice):
            import tensorflow as tf

            tf.linalg.matmul(tf.ones((64, 64)), tf.ones((64, 64))).numpy()  # eager context and compute pools
            tf.function(lambda x: x + 1.0)(tf.ones(2)).numpy()  # graph executor threads

    thread = threading.Thread(target=start, name="lantern-tf-start", daemon=True)
    thread.start()
    thread.join()


_MANAGER: JobManager | None = None
_LOCK = threading.Lock()
_BOOTED = False


def manager() -> JobManager:
    """The process-wide job manager, created on first use with the server's limits and backend.

    The backend is Ray where ``LANTERN_RAY_ADDRESS`` is set (Ray itself starts with the first job, or at
    :func:`bootstrap`), else the server's threads.
    """
    global _MANAGER
    with _LOCK:
        if _MANAGER is None:
            limits = settings.SETTINGS
            _MANAGER = JobManager(
                max_concurrent=limits.max_concurrent_jobs,
                max_per_session=limits.max_jobs_per_session,
                max_queue=limits.max_queue,
                is_owner_alive=session_is_alive,
                nice=limits.job_nice,
                backend=make_backend(limits.ray_address, max_concurrent=limits.max_concurrent_jobs,
                                     nice=limits.job_nice, time_budget_s=limits.job_time_budget_s),
            )
        return _MANAGER


def bootstrap() -> JobManager:
    """Start the server's process-wide machinery, once (``app.py`` calls it on every run; later calls return).

    Switches off Streamlit's per-rerun Keras clean-up, keeps generated downloads for their session, sends the
    ``lantern`` logs to stderr, starts TensorFlow's compute pools at the jobs' priority, freezes the start-up
    objects and starts the memory release (``LANTERN_MEMORY_RELEASE_S``) and log (``LANTERN_MEMORY_LOG_S``)
    threads, and creates the job manager (starting Ray in the background where ``LANTERN_RAY_ADDRESS`` is set).
    Returns the job manager.
    """
    global _BOOTED
    with _LOCK:
        if _BOOTED:
            booted = True
        else:
            booted, _BOOTED = False, True
    if booted:
        return manager()
    limits = settings.SETTINGS
    _keep_keras_state_between_reruns()
    _keep_generated_downloads_for_their_session()
    _configure_logging()
    if limits.memory_log_s > 0:
        _start_memory_log(limits.memory_log_s)
    _start_tensorflow_at_low_priority(limits.job_nice)
    if limits.memory_release_s > 0:  # after TensorFlow started: its objects are frozen too
        _freeze_startup_objects()
        _start_memory_release(limits.memory_release_s)
    jobs = manager()
    prestart = getattr(jobs.backend, "prestart", None)
    if prestart is not None:
        prestart()  # Ray starts while the first visitors look around
    atexit.register(jobs.close)
    return jobs


class _Manager:
    """``MANAGER``: the job manager of :func:`manager`, looked up on each use (created on the first)."""

    def __getattr__(self, name: str):
        return getattr(manager(), name)

    def __repr__(self) -> str:
        return f"<the job manager: {manager()!r}>"


MANAGER = _Manager()
