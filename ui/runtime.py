"""The process-wide job manager and the current session's identity."""

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

import keras
from streamlit.runtime import Runtime
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.scriptrunner import script_runner as _script_runner
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from ui.jobs import Job, JobManager, lower_thread_priority
from ui.settings import SETTINGS
from ui.workers import WorkerPool, as_message, process_rss_mib


def _keep_keras_state_between_reruns() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit does this by default (``_clean_problem_modules``). In a server where jobs train in
    background threads it resets TensorFlow's default graph and kernel caches and runs a full
    garbage collection under those jobs, every time any session reruns — twice a second while a
    progress panel refreshes. Lantern keeps no Keras state that needs clearing between reruns
    (every model belongs to a job or a session), so the clean-up is switched off here, once per
    process.
    """
    if getattr(_script_runner, "_lantern_patched", False):
        return
    _script_runner._clean_problem_modules = lambda: None
    _script_runner._lantern_patched = True


_keep_keras_state_between_reruns()


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


_keep_generated_downloads_for_their_session()


def _configure_logging() -> None:
    """Job logs (one JSON object per line) go to stderr under the 'lantern' logger."""
    logger = logging.getLogger("lantern")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


_configure_logging()


def session_id() -> str:
    """The id of the browser session running this script ('local' outside a session)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def session_is_alive(owner: str) -> bool:
    """Whether ``owner``'s browser session is still connected (always true without a server)."""
    if owner == "local" or not Runtime.exists():
        return True
    return Runtime.instance().is_active_session(owner)


def rss_mib() -> float:
    """This process's resident memory in MiB (-1 where ``/proc`` is not available)."""
    rss = process_rss_mib()
    return -1.0 if rss is None else rss


def _memory_census() -> dict:
    """What the server holds: RSS, live Streamlit sessions, Keras models, Lantern job results (costly: walks the heap)."""
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


if SETTINGS.memory_log_s > 0:  # this module is imported once per server process
    _start_memory_log(SETTINGS.memory_log_s)


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


_start_tensorflow_at_low_priority(SETTINGS.job_nice)  # this module is imported once per server process

if SETTINGS.memory_release_s > 0:  # after TensorFlow started: its objects are frozen too
    _freeze_startup_objects()
    _start_memory_release(SETTINGS.memory_release_s)


MANAGER = JobManager(
    max_concurrent=SETTINGS.max_concurrent_jobs,
    max_per_session=SETTINGS.max_jobs_per_session,
    max_queue=SETTINGS.max_queue,
    is_owner_alive=session_is_alive,
    nice=SETTINGS.job_nice,
)

POOL: WorkerPool | None = None
if SETTINGS.job_processes:
    POOL = WorkerPool(size=SETTINGS.max_concurrent_jobs, nice=SETTINGS.job_nice, max_tasks=SETTINGS.worker_max_tasks,
                      idle_recycle_s=SETTINGS.worker_idle_recycle_s)
    POOL.prestart()  # the workers import TensorFlow while the first visitors look around
    atexit.register(POOL.close)


def run_task(job: Job, task: str, params: dict, arrays: dict) -> tuple[dict, dict]:
    """Run the :mod:`ui.tasks` task ``task`` for ``job``: in the job's own thread (the default), or in a worker
    process with ``LANTERN_JOB_PROCESSES=1``. The task gets the server's job time budget; a worker is killed if
    it runs past twice that (plus a minute for scoring)."""
    params = {**params, "time_budget": SETTINGS.job_time_budget_s}
    if POOL is None:  # the same task, with what it would see and answer through a worker's pipes
        from ui.tasks import TASKS

        return as_message(*TASKS[task](job, *as_message(params, arrays)))
    return POOL.run(job, task, params, arrays, deadline_s=2 * SETTINGS.job_time_budget_s + 60)
