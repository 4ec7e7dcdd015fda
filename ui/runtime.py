"""The process-wide job manager and the current session's identity."""

from __future__ import annotations

import logging
import sys

from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import script_runner as _script_runner
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from ui.jobs import JobManager
from ui.settings import SETTINGS


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


MANAGER = JobManager(
    max_concurrent=SETTINGS.max_concurrent_jobs,
    max_per_session=SETTINGS.max_jobs_per_session,
    max_queue=SETTINGS.max_queue,
    is_owner_alive=session_is_alive,
)
