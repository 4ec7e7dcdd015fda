"""The job runner on Ray (``LANTERN_RAY_ADDRESS=local``): a job function runs in a Ray worker process with the
same progress, Cancel, failures and limits as in a thread, and a worker that dies fails only its own job.

One local runtime (2 CPU slots) serves the whole module; every wait is bounded."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from jobs.ray_backend import KILLED_AFTER_CANCEL, RayBackend
from jobs.runner import CANCELLED, DONE, FAILED, RUNNING, JobManager
from tests.ray import job_functions as jf

pytestmark = pytest.mark.ray

TIMEOUT = 180  # a fresh worker imports TensorFlow; generous for a loaded 2-core machine


def wait_until(predicate, timeout=TIMEOUT, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def _pid_in(message: str) -> int:
    return int(message.rsplit(" ", 1)[1])


def test_a_job_function_runs_in_a_worker_process_with_its_own_copy_of_the_request(manager):
    values = np.arange(4.0)
    job = manager.wait(manager.submit_job("s", "where", jf.where, jf.Request(values=values), time_budget=9), TIMEOUT)
    assert job.state == DONE, job.error
    assert job.where == "ray" and job.result["pid"] != os.getpid()
    assert job.result["streamlit"] is False  # the worker imports the jobs package only
    assert job.result["budget"] == 9  # the server's time budget travels with the job
    np.testing.assert_array_equal(job.result["values"], [0.0, 2.0, 4.0, 6.0])
    np.testing.assert_array_equal(values, [0.0, 1.0, 2.0, 3.0])  # the caller's array is untouched
    assert job.result["values"].flags.writeable  # the answer is the job's, not a view of Ray's store


def test_progress_arrives_while_the_job_runs(manager):
    job = manager.submit_job("s", "train", jf.train, jf.Request(seconds=4))
    assert wait_until(lambda: len(job.events) >= 3 or not job.active)
    assert job.state == RUNNING, job.error  # the loss rows came while it ran, not all at the end
    assert job.events[0]["kind"] == "batch" and job.events[0]["loss"] == pytest.approx(1.0)
    assert 0 < job.fraction < 1 and job.message.startswith("epoch 1/1 · loss")
    manager.wait(job, TIMEOUT)
    assert job.state == DONE and job.result == "trained", job.error
    assert job.message == "scoring" and job.fraction == 1.0
    assert len(job.events) == max(1, int(4 / 0.02))  # every batch event arrived, in order
    assert [e["step"] for e in job.events] == sorted(e["step"] for e in job.events)


def test_cancel_reaches_the_job_in_its_worker(manager):
    job = manager.submit_job("s", "train", jf.train, jf.Request(seconds=120))
    assert wait_until(lambda: job.events or not job.active)
    manager.cancel(job)
    manager.wait(job, TIMEOUT)
    assert job.state == CANCELLED and job.result is None and job.error is None
    assert job.message != KILLED_AFTER_CANCEL  # it stopped by itself at the next batch
    assert len(job.events) < 120 / 0.02


def test_a_job_that_ignores_cancel_is_killed_and_the_next_job_runs(manager, ray_backend):
    job = manager.submit_job("s", "stubborn", jf.stubborn, jf.Request(seconds=600))
    assert wait_until(lambda: job.message.startswith("busy in process") or not job.active)
    pid = _pid_in(job.message)
    manager.cancel(job)
    manager.wait(job, ray_backend.cancel_grace_s + 60)
    assert job.state == CANCELLED and job.message == KILLED_AFTER_CANCEL
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30)  # its process, and memory, are gone
    after = manager.wait(manager.submit_job("s", "train", jf.train, jf.Request(seconds=0.2)), TIMEOUT)
    assert after.state == DONE, after.error


def test_a_killed_worker_fails_only_its_own_job_while_another_succeeds(manager):
    victim = manager.submit_job("alice", "stubborn", jf.stubborn, jf.Request(seconds=600))
    other = manager.submit_job("bob", "train", jf.train, jf.Request(seconds=3))
    assert wait_until(lambda: victim.message.startswith("busy in process") or not victim.active)
    os.kill(_pid_in(victim.message), signal.SIGKILL)  # as the kernel's OOM killer would
    manager.wait(victim, TIMEOUT)
    assert victim.state == FAILED and "worker process running the job stopped unexpectedly" in victim.error
    crashed = manager.wait(manager.submit_job("alice", "crash", jf.crash, jf.Request()), TIMEOUT)
    assert crashed.state == FAILED and "stopped unexpectedly" in crashed.error  # os._exit inside the job
    manager.wait(other, TIMEOUT)
    assert other.state == DONE and other.result == "trained", other.error
    assert manager.stats()["running"] == 0


def test_errors_raised_by_the_job_read_as_in_a_thread(manager):
    bad = manager.wait(manager.submit_job("s", "bad", jf.bad_input, jf.Request()), TIMEOUT)
    bug = manager.wait(manager.submit_job("s", "bug", jf.buggy, jf.Request()), TIMEOUT)
    assert bad.state == FAILED and bad.error == "column 'x' has no numbers; pick numeric columns."
    assert bug.state == FAILED and bug.error.startswith("unexpected error (KeyError: 'missing')")


def test_a_job_past_the_hard_deadline_is_killed(ray_backend):
    strict = RayBackend("local", num_cpus=2, cancel_grace_s=2.0, deadline_s=3.0)  # joins the module's runtime
    manager = JobManager(max_concurrent=1, backend=strict)
    job = manager.wait(manager.submit_job("s", "stubborn", jf.stubborn, jf.Request(seconds=600)), TIMEOUT)
    assert job.state == FAILED and "ran past the server's hard limit (3 s)" in job.error
    strict.close()  # leaves the module's runtime running (it did not start it)
    import ray

    assert ray.is_initialized()
