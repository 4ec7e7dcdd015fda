""""Stop and keep" on Ray, and a light progress channel (issue #18 with #20.5).

A job on Ray stops after the current batch when the server's token is ``stop()``-ed, and answers with the model
learned so far, as in a thread; it is not killed after the Cancel grace period. The channel's actor process
imports no TensorFlow. One local runtime (2 CPU slots) serves the module; every wait is bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray

from jobs.ray_backend import KILLED_AFTER_CANCEL
from jobs.runner import DONE
from tests.ray import job_functions as jf
from tests.ray.test_jobs_on_ray import TIMEOUT, wait_until

pytestmark = pytest.mark.ray

EPOCHS = 100_000  # a run that only ends when stopped, or at the time budget


def test_stop_and_keep_ends_training_after_the_current_batch_and_the_job_answers_with_the_model(manager):
    job = manager.submit_job("s", "fit", jf.fit, jf.FitRequest(EPOCHS), time_budget=90)
    assert wait_until(lambda: any(e.get("kind") == "epoch" for e in job.events) or not job.active)
    job.cancel.stop()  # what the page's "Stop and keep" does
    manager.wait(job, TIMEOUT)
    assert job.state == DONE, job.error
    assert job.where == "ray" and job.message != KILLED_AFTER_CANCEL
    answer = job.result
    assert answer["stopped"] == "stopped"  # not "time_budget": the Stop mark reached the engine's loop
    assert 1 <= answer["epochs_run"] < EPOCHS and len(answer["losses"]) == answer["epochs_run"]
    assert answer["weights"] and all(np.isfinite(w).all() for w in answer["weights"])  # the model learned so far
    assert job.cancel.stop_requested and not job.cancel.cancelled  # the page then says "stopped at your request"


def test_a_stopped_job_is_left_to_answer_after_the_cancel_grace_period(manager, ray_backend):
    linger = ray_backend.cancel_grace_s + 3
    job = manager.submit_job("s", "slow", jf.slow_to_stop, jf.StopRequest(wait_s=60, linger_s=linger))
    assert wait_until(lambda: job.message == "waiting for Stop" or not job.active)
    job.cancel.stop()
    assert wait_until(lambda: job.message == "wrapping up after Stop" or not job.active, timeout=60)
    manager.wait(job, TIMEOUT)
    assert job.state == DONE and job.result == "kept", (job.state, job.error, job.message)


def test_cancel_after_stop_still_discards_the_run(manager):
    job = manager.submit_job("s", "slow", jf.slow_to_stop, jf.StopRequest(wait_s=60, linger_s=600))
    assert wait_until(lambda: job.message == "waiting for Stop" or not job.active)
    job.cancel.stop()
    assert wait_until(lambda: job.message == "wrapping up after Stop" or not job.active, timeout=60)
    manager.cancel(job)  # the job ignores it while it wraps up: killed after the grace period, nothing kept
    manager.wait(job, TIMEOUT)
    assert job.state == "cancelled" and job.result is None and job.message == KILLED_AFTER_CANCEL


def _in_channel(ray_backend, probe):
    """``probe()``'s answer, computed in the channel's actor process (the probe travels by value)."""
    ray_backend.start()
    return ray.get(ray_backend._channel.__ray_call__.remote(lambda self: probe()), timeout=TIMEOUT)


def test_the_channel_actor_process_does_not_import_tensorflow_or_the_engine(ray_backend):
    heavy = _in_channel(ray_backend, lambda: sorted(name for name in ("tensorflow", "keras", "engine", "jobs.runner")
                                                    if name in __import__("sys").modules))
    assert heavy == []
    pid = _in_channel(ray_backend, lambda: __import__("os").getpid())
    assert "tensorflow" not in Path(f"/proc/{pid}/maps").read_text()  # no TensorFlow library mapped either
    status = Path(f"/proc/{pid}/status").read_text()
    rss_mib = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
    assert rss_mib < 400, rss_mib  # with TensorFlow imported it held about 720 MiB
