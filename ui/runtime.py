"""The process-wide job manager and the current session's identity."""

from __future__ import annotations

from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from ui.jobs import JobManager
from ui.settings import SETTINGS


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
