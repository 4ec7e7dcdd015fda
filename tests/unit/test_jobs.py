"""The job runner (jobs.runner.JobManager) on threads: admission limit, queue, per-session cap, cancel, failures, watchdog.

Fake jobs are gated by threading.Events, so every test decides exactly when each job may finish; no
test sleeps longer than a few polling intervals.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref

import keras
import numpy as np
import pytest

from engine.errors import DataError
from engine.nets import mlp
from engine.training import TrainingEvent, train
from jobs.runner import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobLimitError, JobManager
from tests.unit.job_helpers import TIMEOUT, cancellable, wait_until


class Gate:
    """A fake job that signals when it starts and finishes only when released."""

    def __init__(self, result="ok"):
        self.started = threading.Event()
        self.release = threading.Event()
        self.result = result
        self.runs = 0

    def __call__(self, job: Job):
        self.runs += 1
        self.started.set()
        if not self.release.wait(timeout=TIMEOUT):
            raise AssertionError("gate never released")
        return self.result


@pytest.fixture
def gates():
    made: list[Gate] = []

    def make(result="ok"):
        made.append(Gate(result))
        return made[-1]

    yield make
    for gate in made:  # never leave a worker thread blocked after a failed assertion
        gate.release.set()


def test_third_job_is_queued_while_two_run_then_admitted_in_order(gates):
    manager = JobManager(max_concurrent=2, max_per_session=5)
    first, second, third, fourth = gates("a"), gates("b"), gates("c"), gates("d")
    jobs = [manager.submit(f"owner-{i}", f"job {i}", gate) for i, gate in enumerate([first, second, third, fourth])]
    assert first.started.wait(TIMEOUT) and second.started.wait(TIMEOUT)
    assert [j.state for j in jobs] == [RUNNING, RUNNING, QUEUED, QUEUED]
    assert [manager.queue_position(j) for j in jobs] == [0, 0, 1, 2]
    assert manager.stats()["running"] == 2 and manager.stats()["queued"] == 2
    assert not third.started.is_set()

    first.release.set()
    assert third.started.wait(TIMEOUT)
    assert manager.wait(jobs[0], timeout=TIMEOUT).state == DONE and jobs[0].result == "a"
    assert jobs[2].state == RUNNING and not fourth.started.is_set()
    assert manager.queue_position(jobs[3]) == 1

    for gate in (second, third, fourth):
        gate.release.set()
    for job in jobs:
        manager.wait(job, timeout=TIMEOUT)
    assert [j.state for j in jobs] == [DONE] * 4 and [j.result for j in jobs] == ["a", "b", "c", "d"]
    assert all(j.started >= j.created and j.finished >= j.started and j.seconds >= 0 for j in jobs)
    assert manager.stats() == {"running": 0, "queued": 0, "rejected": 0, DONE: 4, FAILED: 0, CANCELLED: 0}


def test_a_session_over_its_share_is_refused(gates):
    manager = JobManager(max_concurrent=4, max_per_session=2)
    first, second = gates(), gates()
    jobs = [manager.submit("alice", "train A", first), manager.submit("alice", "train B", second)]
    with pytest.raises(JobLimitError, match=r"you already have 2 job\(s\) running or queued \(train A, train B\)"):
        manager.submit("alice", "train C", gates())
    other = manager.submit("bob", "bob's job", gates("bob"))  # another session is not affected
    assert manager.stats()["rejected"] == 1
    first.release.set()
    manager.wait(jobs[0], timeout=TIMEOUT)
    again = manager.submit("alice", "train C", gates("again"))  # a finished job frees the share
    assert again.owner == "alice" and again.active and other.active
    assert manager.stats()["rejected"] == 1


def test_a_full_queue_refuses_new_jobs(gates):
    manager = JobManager(max_concurrent=1, max_per_session=5, max_queue=1)
    running = gates()
    manager.submit("a", "running", running)
    assert running.started.wait(TIMEOUT)
    manager.submit("b", "waiting", gates())
    with pytest.raises(JobLimitError, match="the server is busy: too many jobs are waiting"):
        manager.submit("c", "refused", gates())
    assert manager.stats()["rejected"] == 1


def test_cancelling_a_queued_job_removes_it_at_once_and_it_never_runs(gates):
    manager = JobManager(max_concurrent=1)
    running, queued = gates(), gates()
    first = manager.submit("a", "first", running)
    assert running.started.wait(TIMEOUT)
    waiting = manager.submit("b", "second", queued)
    assert manager.queue_position(waiting) == 1
    manager.cancel(waiting)
    assert waiting.state == CANCELLED and waiting.cancel.cancelled and not waiting.active
    assert manager.queue_position(waiting) == 0 and manager.stats()["queued"] == 0
    running.release.set()
    manager.wait(first, timeout=TIMEOUT)
    assert first.state == DONE
    assert queued.runs == 0
    assert manager.stats()[CANCELLED] == 1 and manager.stats()[DONE] == 1


def test_cancelling_a_running_job_goes_through_its_token():
    manager = JobManager(max_concurrent=1)
    job = manager.submit("a", "long", cancellable)
    assert wait_until(lambda: job.state == RUNNING)
    manager.cancel(job)
    assert manager.wait(job, timeout=TIMEOUT).state == CANCELLED
    assert job.result is None and job.error is None
    # The slot is free again.
    follow_up = manager.submit("a", "next", lambda j: 7)
    assert manager.wait(follow_up, timeout=TIMEOUT).result == 7


def test_a_job_that_returns_after_being_cancelled_keeps_no_result(gates):
    manager = JobManager(max_concurrent=1)
    gate = gates("half-done")
    job = manager.submit("a", "ignores its token", gate)
    assert gate.started.wait(TIMEOUT)
    manager.cancel(job)
    gate.release.set()
    assert manager.wait(job, timeout=TIMEOUT).state == CANCELLED and job.result is None


def test_cancel_owner_cancels_every_job_of_that_session_only(gates):
    manager = JobManager(max_concurrent=1, max_per_session=3)
    mine_running = manager.submit("me", "running", cancellable)
    assert wait_until(lambda: mine_running.state == RUNNING)
    mine_queued = manager.submit("me", "queued", gates())
    theirs_gate = gates("theirs")
    theirs = manager.submit("them", "theirs", theirs_gate)
    assert manager.cancel_owner("me") == 2
    assert mine_queued.state == CANCELLED
    assert manager.wait(mine_running, timeout=TIMEOUT).state == CANCELLED
    assert theirs_gate.started.wait(TIMEOUT)
    theirs_gate.release.set()
    assert manager.wait(theirs, timeout=TIMEOUT).state == DONE


def test_a_lantern_error_fails_the_job_with_its_message():
    manager = JobManager()

    def bad_data(job):
        raise DataError("column 'x' holds text; mark it categorical.")

    job = manager.wait(manager.submit("a", "bad", bad_data), timeout=TIMEOUT)
    assert job.state == FAILED and job.error == "column 'x' holds text; mark it categorical."
    assert job.result is None


def test_an_unexpected_exception_fails_only_that_job(caplog):
    manager = JobManager(max_concurrent=1)

    def buggy(job):
        return 1 / 0

    broken = manager.submit("a", "buggy", buggy)
    healthy = manager.submit("b", "healthy", lambda job: "fine")
    manager.wait(broken, timeout=TIMEOUT)
    manager.wait(healthy, timeout=TIMEOUT)
    assert broken.state == FAILED
    assert broken.error.startswith("unexpected error (ZeroDivisionError: division by zero)")
    assert "nothing else is affected" in broken.error
    assert healthy.state == DONE and healthy.result == "fine"
    assert "Traceback" in caplog.text  # the traceback goes to the server log, not to the user
    assert manager.stats()[FAILED] == 1 and manager.stats()[DONE] == 1


def test_running_out_of_memory_is_a_readable_failure():
    manager = JobManager()

    def greedy(job):
        raise MemoryError()

    job = manager.wait(manager.submit("a", "greedy", greedy), timeout=TIMEOUT)
    assert job.state == FAILED and "ran out of memory" in job.error


def test_watchdog_cancels_running_and_queued_jobs_of_a_dead_session(gates):
    dead: set[str] = set()
    manager = JobManager(max_concurrent=1, max_per_session=3, is_owner_alive=lambda owner: owner not in dead,
                         watchdog_interval=0.02)
    ghost_running = manager.submit("ghost", "running", cancellable)
    assert wait_until(lambda: ghost_running.state == RUNNING)
    ghost_queued = manager.submit("ghost", "queued", gates())
    alive_gate = gates("alive")
    alive = manager.submit("alive", "kept", alive_gate)
    dead.add("ghost")
    assert manager.wait(ghost_running, timeout=TIMEOUT).state == CANCELLED
    assert ghost_queued.state == CANCELLED
    assert alive_gate.started.wait(TIMEOUT)  # the freed slot goes to the live session
    assert not alive.cancel.cancelled
    alive_gate.release.set()
    assert manager.wait(alive, timeout=TIMEOUT).state == DONE


def test_a_failing_liveness_probe_does_not_cancel_anything(gates):
    def probe(owner):
        raise RuntimeError("runtime gone")

    manager = JobManager(is_owner_alive=probe, watchdog_interval=0.02)
    gate = gates("survived")
    job = manager.submit("a", "job", gate)
    assert gate.started.wait(TIMEOUT)
    time.sleep(0.1)  # several watchdog rounds
    assert job.state == RUNNING and not job.cancel.cancelled
    gate.release.set()
    assert manager.wait(job, timeout=TIMEOUT).state == DONE


def test_a_finished_job_is_not_kept_alive_by_the_manager_or_its_watchdog(gates):
    """Once its session drops it, a finished job (and the detector and data its result holds) must be freed.

    The watchdog once kept the last job it had checked in its loop variable while it slept, and with it the
    page's whole result: every closed session's models stayed in memory.
    """
    class Result:  # a stand-in for what a page keeps (detector, data, scores)
        pass

    manager = JobManager(is_owner_alive=lambda owner: True, watchdog_interval=0.01)
    gate = gates("kept result")
    job = manager.submit("a", "job", lambda job: (gate(job), Result())[1])
    assert gate.started.wait(TIMEOUT)
    time.sleep(0.1)  # the watchdog checks the running job several times
    gate.release.set()
    assert manager.wait(job, timeout=TIMEOUT).state == DONE
    time.sleep(0.1)  # ... and keeps sleeping after it finished
    job_ref, result_ref = weakref.ref(job), weakref.ref(job.result)
    del job
    gc.collect()
    assert job_ref() is None and result_ref() is None


def thread_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a Linux feature")
def test_jobs_run_at_the_managers_lower_priority_and_the_callers_thread_keeps_its_own():
    before = thread_priority()
    low = JobManager(nice=min(19, before + 5))
    job = low.wait(low.submit("a", "niced", lambda job: thread_priority()), timeout=TIMEOUT)
    assert job.state == DONE and job.result == min(19, before + 5)
    plain = JobManager()
    assert plain.wait(plain.submit("a", "default", lambda job: thread_priority()), timeout=TIMEOUT).result == before
    assert thread_priority() == before  # only the job's own thread changed


def test_wait_with_a_timeout_returns_an_unfinished_job(gates):
    manager = JobManager()
    gate = gates()
    job = manager.submit("a", "slow", gate)
    assert manager.wait(job, timeout=0.05).active
    gate.release.set()
    assert not manager.wait(job, timeout=TIMEOUT).active


def test_job_collects_training_events_from_the_engine_loop():
    manager = JobManager()
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")

    def fit(job):
        model = mlp(3, [4], 3, seed=0)
        loss = lambda t, o: keras.ops.mean((t - o) ** 2)  # noqa: E731
        return train(model, loss, x, epochs=2, batch_size=16, seed=0, progress=job.report, cancel=job.cancel,
                     log_metric=("mae", keras.metrics.MeanAbsoluteError()))

    job = manager.wait(manager.submit("a", "train", fit), timeout=60)
    assert job.state == DONE, job.error
    assert [(e["kind"], e["epoch"], e["step"], e["global_step"]) for e in job.events] == [
        ("batch", 1, 1, 1), ("batch", 1, 2, 2), ("epoch", 1, 2, 2),
        ("batch", 2, 1, 3), ("batch", 2, 2, 4), ("epoch", 2, 2, 4)]
    assert all(np.isfinite(e["loss"]) and "mae" in e for e in job.events)
    assert [e["loss"] for e in job.events if e["kind"] == "epoch"] == pytest.approx(job.result.loss)
    assert job.fraction == 1.0 and job.message.startswith("epoch 2/2 · loss ")


def test_report_accepts_plain_dicts_and_stays_bounded():
    job = Job(id=1, owner="a", label="attack", kind="attack", fn=lambda j: None)
    job.report({"fraction": 0.25, "message": "attacking batch 1"})
    assert job.fraction == 0.25 and job.message == "attacking batch 1"
    job.set_stage("explaining", 0.5)
    assert job.message == "explaining" and job.fraction == 0.5
    job.set_stage("still explaining")
    assert job.fraction == 0.5
    for i in range(10_000):
        job.report({"step": i})
    assert len(job.events) <= 4_000
    assert job.events[-1] == {"step": 9_999}
    steps = [e.get("step", -1) for e in job.events]
    assert steps == sorted(steps)  # thinning keeps the order


def test_report_of_a_training_event_sets_fraction_and_message():
    job = Job(id=1, owner="a", label="x", kind="train", fn=lambda j: None)
    job.report(TrainingEvent("batch", epoch=2, epochs=4, step=3, steps_per_epoch=6, loss=0.123456,
                             metrics={"acc": 0.9}, elapsed=1.0))
    assert job.fraction == pytest.approx(9 / 24)
    assert job.message == "epoch 2/4 · loss 0.1235"
    assert job.events == [{"kind": "batch", "epoch": 2, "step": 3, "global_step": 9, "loss": 0.123456, "acc": 0.9}]


def test_a_job_raising_system_exit_fails_and_frees_its_slot():
    manager = JobManager(max_concurrent=1)

    def bail_out(job):
        raise SystemExit(3)

    failed = manager.wait(manager.submit("s1", "bail", bail_out), timeout=10)
    assert failed.state == "failed" and "SystemExit" in failed.error
    follow_up = manager.wait(manager.submit("s1", "next", lambda job: "ok"), timeout=10)
    assert follow_up.state == "done" and follow_up.result == "ok"


# -- job functions (fn(request, progress)) on the default backend: the job's own thread -------------------------
def _double(request, progress):
    progress.set_stage("doubling", 0.5)
    progress.report({"fraction": 0.9, "message": "nearly"})
    return {"answer": 2 * request, "budget": progress.time_budget, "cancel": progress.cancel}


def _refuse(request, progress):
    raise DataError("column 'x' has no numbers; pick numeric columns.")


def test_a_job_function_runs_in_a_thread_with_the_job_as_its_progress():
    manager = JobManager(max_concurrent=1)
    assert manager.backend.name == "thread"
    context = object()
    job = manager.wait(manager.submit_job("s", "double", _double, 21, time_budget=7, context=context), TIMEOUT)
    assert job.state == DONE and job.where == "thread"
    assert job.result["answer"] == 42 and job.result["budget"] == 7
    assert job.result["cancel"] is job.cancel  # the engine's token is the job's own
    assert job.context is context  # kept here, never handed to the function
    assert (job.fraction, job.message) == (0.9, "nearly") and job.events == [{"fraction": 0.9, "message": "nearly"}]


def test_a_job_function_that_fails_fails_only_its_job_and_the_next_one_runs():
    manager = JobManager(max_concurrent=1)
    bad = manager.wait(manager.submit_job("s", "bad", _refuse, None), TIMEOUT)
    good = manager.wait(manager.submit_job("s", "good", _double, 1), TIMEOUT)
    assert bad.state == FAILED and bad.error == "column 'x' has no numbers; pick numeric columns."
    assert good.state == DONE and good.result["answer"] == 2
    assert manager.stats()["running"] == 0


def test_job_functions_share_the_limits_of_plain_jobs(gates):
    manager = JobManager(max_concurrent=1, max_per_session=1)
    gate = gates()
    first = manager.submit("s", "gate", gate)
    with pytest.raises(JobLimitError, match="already have 1 job"):
        manager.submit_job("s", "double", _double, 1)
    queued = manager.submit_job("other", "double", _double, 1)
    assert manager.queue_position(queued) == 1 and queued.state == QUEUED
    gate.release.set()
    assert manager.wait(queued, TIMEOUT).state == DONE and manager.wait(first, TIMEOUT).state == DONE


def test_the_default_backend_is_threads_and_nothing_starts_ray():
    """With LANTERN_RAY_ADDRESS unset the server's start-up neither imports Ray nor starts a Ray process; importing
    the runtime, the job panel or a page's widgets changes nothing until app.py calls bootstrap()."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import gc, sys, threading\n"
        "import ui.runtime, ui.training, ui.scores\n"
        "from streamlit.runtime.scriptrunner import script_runner\n"
        "names = lambda: {t.name for t in threading.enumerate()}\n"
        "assert not getattr(script_runner, '_lantern_patched', False), 'patched at import'\n"
        "assert 'lantern-memory-release' not in names() and gc.get_freeze_count() == 0, 'started at import'\n"
        "assert ui.runtime._MANAGER is None, 'manager made at import'\n"
        "manager = ui.runtime.bootstrap()\n"
        "assert ui.runtime.bootstrap() is manager and ui.runtime.manager() is manager\n"
        "assert script_runner._lantern_patched and 'lantern-memory-release' in names()\n"
        "assert manager.backend.name == 'thread' and 'ray' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LANTERN_RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180,
                         env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_ray_address_where_no_head_answers_fails_the_job_with_what_to_do():
    """LANTERN_RAY_ADDRESS pointing nowhere: the job fails at once with a message; the manager keeps working."""
    pytest.importorskip("ray")
    from jobs.runner import make_backend

    manager = JobManager(max_concurrent=1, backend=make_backend("127.0.0.1:9", max_concurrent=1))
    assert manager.backend.name == "ray"
    job = manager.wait(manager.submit_job("s", "double", _double, 1), TIMEOUT)
    assert job.state == FAILED
    assert job.error.startswith("LANTERN_RAY_ADDRESS 127.0.0.1:9: no Ray head answers there")
    assert "ray start --head" in job.error
    plain = manager.wait(manager.submit("s", "plain", lambda job: 42), TIMEOUT)
    assert plain.state == DONE and plain.result == 42
