"""Moved to :mod:`jobs.runner` (the job runner does not depend on Streamlit); kept for imports not yet updated."""

from jobs.runner import (  # noqa: F401
    CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobLimitError, JobManager, JobWorkerError, lower_thread_priority,
)
