"""Helpers for AppTest-based page tests."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def page(name: str, timeout: float = 120) -> AppTest:
    """An AppTest for ``pages/<name>.py``, with the Streamlit set-up app.py's start-up would have made."""
    from ui.runtime import prepare_streamlit

    prepare_streamlit()
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=timeout)


def no_exceptions(at: AppTest) -> None:
    """Fail with the exception text when the page raised."""
    assert not at.exception, [e.value for e in at.exception]


def run_until_job_done(at: AppTest, job_key: str, timeout: float = 300) -> None:
    """Rerun the page until the job stored under ``job_key`` has finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = at.session_state[f"job::{job_key}"] if f"job::{job_key}" in at.session_state else None
        if job is not None and not job.active:
            at.run()
            return
        time.sleep(0.5)
        at.run()
    raise AssertionError(f"job {job_key!r} did not finish within {timeout} s")


def metric_value(at: AppTest, label: str) -> str:
    for metric in at.metric:
        if metric.label == label:
            return metric.value
    raise AssertionError(f"no metric labelled {label!r}; have {[m.label for m in at.metric]}")


def finish_job(at: AppTest, job_key: str, timeout: float = 300):
    """Rerun the page until the job under ``job_key`` has finished; fail unless the page raised nothing and the job
    succeeded. Returns the job."""
    run_until_job_done(at, job_key, timeout)
    no_exceptions(at)
    job = at.session_state[f"job::{job_key}"]
    assert job.state == "done", job.error
    return job


def click_and_finish(at: AppTest, button_key: str, job_key: str, timeout: float = 300):
    """Click the button that starts the job under ``job_key`` and :func:`finish_job` it. Returns the job."""
    at.button(key=button_key).click().run()
    return finish_job(at, job_key, timeout)
