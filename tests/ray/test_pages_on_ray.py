"""Page tests with ``LANTERN_RAY_ADDRESS=local``: a training, an explanation and Cancel, as the AppTests in
tests/app run them, with the server's job manager on a local Ray runtime.

The scenarios are the page tests' own functions, run again here with the Ray-backed manager in place. A page's
job functions (``training.start_job``, the only way a page starts a job) run in Ray workers, and the test checks
that they ran on Ray. "Stop and keep" runs on the session tests'
one-job page (tests/app/session_app.py), whose job trains with the engine's loop.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from jobs.runner import DONE, JobManager
from tests.app import test_anchors_page as anchors
from tests.app import test_session_persistence as persistence
from tests.app.helpers import ROOT, metric_value, no_exceptions, run_until_job_done
from tests.app import test_tabular_outliers_page as tabular
from tests.app import test_timeseries_outliers_page as timeseries

pytestmark = [pytest.mark.ray, pytest.mark.app]


class RecordingManager(JobManager):
    """The server's job manager, keeping every job it was given (to check where each one ran)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []
        self.job_functions = set()

    def submit(self, *args, **kwargs):
        job = super().submit(*args, **kwargs)
        self.seen.append(job)
        return job

    def submit_job(self, owner, label, fn, request, **kwargs):
        job = super().submit_job(owner, label, fn, request, **kwargs)
        self.job_functions.add(job.id)
        return job


@pytest.fixture(scope="module")
def on_ray(ray_backend):
    """``ui.runtime.manager()`` is a manager on the module's Ray runtime while these tests run."""
    from ui import runtime

    manager = RecordingManager(max_concurrent=2, max_per_session=2, backend=ray_backend,
                               is_owner_alive=runtime.session_is_alive)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "_MANAGER", manager)
        yield manager


def _uses_start_job(page: str) -> bool:
    return "start_job(" in (ROOT / "pages" / f"{page}.py").read_text()


@pytest.fixture
def jobs_here(on_ray, request):
    """The jobs one test on page ``request.param`` started; afterwards, those started through ``start_job`` must have run on Ray (and, for
    a page that calls ``start_job``, at least one did)."""
    first = len(on_ray.seen)
    yield on_ray
    mine = on_ray.seen[first:]
    assert mine, "the scenario started no job"
    for job in mine:
        if job.id in on_ray.job_functions:
            assert job.where == "ray", (job.label, job.where)
    if _uses_start_job(request.param):
        assert any(job.where == "ray" for job in mine), [(job.label, job.where) for job in mine]


@pytest.mark.parametrize("jobs_here", ["tabular_outliers"], indirect=True)
def test_tabular_training_on_ray(jobs_here):
    tabular.test_train_two_epochs_on_shuttle_then_slider_changes_flagged_count()
    assert jobs_here.seen[-1].state == DONE


@pytest.mark.parametrize("jobs_here", ["anchors"], indirect=True)
def test_anchors_explanation_on_ray(jobs_here):
    anchors.test_train_on_adult_then_explain_one_row_shows_rules_precision_coverage_and_examples()


@pytest.mark.parametrize("jobs_here", ["timeseries_outliers"], indirect=True)
def test_cancel_on_ray(jobs_here):
    timeseries.test_cancel_stops_training_and_keeps_nothing()
    assert jobs_here.seen[-1].state == "cancelled"


def test_stop_and_keep_on_ray_keeps_the_model_trained_so_far(on_ray, monkeypatch):
    from ui import settings

    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, job_time_budget_s=90))
    at = persistence.demo()
    persistence.train(at, persistence.LONG)  # a run that only ends when stopped (or at the time budget)
    job = at.session_state["job::demo"]
    deadline = time.time() + 180  # the worker imports TensorFlow first
    while job.active and not any(e.get("kind") == "epoch" for e in job.events) and time.time() < deadline:
        time.sleep(0.5)
    at.run()  # the panel now offers "Stop and keep"
    no_exceptions(at)
    at.button(key="stopkeep::demo").click()
    run_until_job_done(at, "demo")
    assert job.where == "ray" and job.state == DONE, (job.where, job.state, job.error)
    assert 1 <= int(metric_value(at, "Epochs trained")) < persistence.LONG
    assert "stopped: stopped" in persistence.texts(at.caption)  # not "time_budget": the engine saw the Stop
    assert "stopped at your request" in persistence.texts(at.warning)
