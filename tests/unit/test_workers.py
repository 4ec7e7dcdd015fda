"""Jobs in worker processes: the message format, the pool, and what a worker's failure does (and does not) reach."""

import io
import os
import signal
import time

import numpy as np
import pytest

from engine.errors import DataError, LanternError
from ui.jobs import CANCELLED, DONE, FAILED, JobManager
from ui.workers import WorkerError, WorkerPool, as_message, read_message, write_message

TEST_TASKS = ("tests.unit.worker_tasks",)


def test_a_message_carries_json_and_arrays_exactly():
    buffer = io.BytesIO()
    arrays = {"X": np.arange(12, dtype=np.float32).reshape(3, 4), "mask": np.array([True, False, True]),
              "bytes": np.frombuffer(b"PK\x03\x04 archive", dtype=np.uint8)}
    write_message(buffer, {"type": "task", "params": {"epochs": 2, "name": "é", "lr": 1e-3}}, arrays)
    write_message(buffer, {"type": "cancel"})
    buffer.seek(0)
    header, got = read_message(buffer)
    assert header == {"type": "task", "params": {"epochs": 2, "name": "é", "lr": 1e-3}}
    assert list(got) == ["X", "mask", "bytes"]
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and np.array_equal(got[name], array)
    assert read_message(buffer) == ({"type": "cancel"}, {})
    with pytest.raises(EOFError):
        read_message(buffer)


def test_nothing_is_pickled_object_arrays_are_refused():
    with pytest.raises(ValueError):
        write_message(io.BytesIO(), {"type": "task"}, {"x": np.array([{"a": 1}], dtype=object)})


def test_a_task_run_in_a_thread_sees_what_the_pipe_would_deliver():
    values, arrays = as_message({"shape": (8, 8), "n": 3}, {"x": [1.0, 2.0]})
    assert values == {"shape": [8, 8], "n": 3} and arrays["x"].dtype == np.float64
    with pytest.raises(TypeError):  # a numpy scalar cannot travel: it fails in a thread as it would in a worker
        as_message({"n": np.int64(3)})
    with pytest.raises(ValueError):
        as_message({}, {"x": np.array([object()])})


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool(size=1, nice=5, task_modules=TEST_TASKS)
    pool.cancel_grace_s = 1.0
    yield pool
    pool.close()


def run(pool, task, params=None, arrays=None, deadline_s=60.0):
    manager = JobManager(max_concurrent=1)
    job = manager.submit("owner", task, lambda job: pool.run(job, task, params or {}, arrays or {}, deadline_s))
    return manager, manager.wait(job, timeout=deadline_s + 60)


def test_a_task_runs_in_another_process_at_lower_priority_without_streamlit(pool):
    _, job = run(pool, "test.ping", {"n": 3}, {"x": np.arange(3.0)})
    assert job.state == DONE, job.error
    values, arrays = job.result
    assert values["pid"] != os.getpid() and values["pid"] in pool.pids()
    assert values["params"] == {"n": 3}
    assert values["nice"] >= 5
    assert values["streamlit"] is False
    np.testing.assert_array_equal(arrays["x"], [0.0, 2.0, 4.0])


def test_progress_and_stages_reach_the_job_in_the_server(pool):
    _, job = run(pool, "test.progress")
    assert job.state == DONE, job.error
    assert [e["step"] for e in job.events if e["kind"] == "batch"] == [1, 2, 3]
    assert job.events[-1]["loss"] == pytest.approx(1 / 3)
    assert job.message == "scoring" and job.fraction == 1.0


def test_an_engine_error_keeps_its_class_and_message_and_the_worker_is_reused(pool):
    _, first = run(pool, "test.ping")
    manager = JobManager(max_concurrent=1)
    captured = {}

    def catch(job):
        try:
            pool.run(job, "test.bad_data", {}, {}, 30)
        except LanternError as exc:
            captured["error"] = exc
            raise

    job = manager.submit("owner", "bad", catch)
    manager.wait(job, timeout=60)
    assert job.state == FAILED and job.error == "the column 'x' is empty"
    assert type(captured["error"]) is DataError
    _, after = run(pool, "test.ping")
    assert after.result[0]["pid"] == first.result[0]["pid"]


def test_a_bug_in_a_task_fails_its_job_with_a_message_and_the_worker_goes_on(pool):
    _, job = run(pool, "test.bug")
    assert job.state == FAILED and "ZeroDivisionError" in job.error and "nothing else is affected" in job.error
    _, after = run(pool, "test.ping")
    assert after.state == DONE


def cancel_while_running(pool, task: str, seconds: float):
    """Start ``task`` (it would run ``seconds``), cancel it once it runs; returns the job, the worker's pid and
    how long the cancel took."""
    manager = JobManager(max_concurrent=1)
    job = manager.submit("owner", task, lambda job: pool.run(job, task, {"seconds": seconds}, {}, 2 * seconds))
    time.sleep(1.5)
    pid = pool.pids()[0]
    started = time.monotonic()
    manager.cancel(job)
    manager.wait(job, timeout=seconds)
    return job, pid, time.monotonic() - started


def test_cancelling_stops_the_task_and_keeps_the_worker(pool):
    job, pid, took = cancel_while_running(pool, "test.sleep", 30)
    assert job.state == CANCELLED and took < 15  # at its next check, long before the 30 s it would have slept
    _, after = run(pool, "test.ping")
    assert after.result[0]["pid"] == pid


def test_a_task_that_ignores_cancelling_is_killed_after_the_grace_period(pool):
    job, pid, took = cancel_while_running(pool, "test.stubborn", 60)
    assert job.state == CANCELLED and took < 30  # killed after the grace period, not after the 60 s
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    _, after = run(pool, "test.ping")
    assert after.state == DONE and after.result[0]["pid"] != pid


def test_a_task_past_its_hard_deadline_is_killed_and_says_so(pool):
    _, job = run(pool, "test.stubborn", {"seconds": 60}, deadline_s=2.0)
    assert job.state == FAILED and "over its time budget" in job.error
    _, after = run(pool, "test.ping")
    assert after.state == DONE


def test_a_worker_that_dies_fails_only_its_job_and_the_next_job_gets_a_new_one(pool):
    _, before = run(pool, "test.ping")
    _, job = run(pool, "test.die")
    assert job.state == FAILED and "stopped unexpectedly" in job.error
    _, after = run(pool, "test.ping")
    assert after.state == DONE and after.result[0]["pid"] != before.result[0]["pid"]


def test_a_worker_killed_from_outside_is_reported_as_likely_out_of_memory(pool):
    manager = JobManager(max_concurrent=1)
    job = manager.submit("owner", "sleep", lambda job: pool.run(job, "test.sleep", {"seconds": 30}, {}, 60))
    time.sleep(1.5)
    os.kill(pool.pids()[0], signal.SIGKILL)  # what the kernel's OOM killer does
    manager.wait(job, timeout=30)
    assert job.state == FAILED and "out of memory" in job.error


def test_an_unknown_task_name_is_refused_by_the_worker(pool):
    _, job = run(pool, "os.system")
    assert job.state == FAILED and "no task 'os.system'" in job.error


def test_a_worker_is_replaced_after_max_tasks():
    pool = WorkerPool(size=1, max_tasks=1, task_modules=TEST_TASKS)
    try:
        pids = [run(pool, "test.ping")[1].result[0]["pid"] for _ in range(2)]
        assert pids[0] != pids[1]
        assert pool.retired >= 1
    finally:
        pool.close()


def test_a_worker_idle_after_tasks_is_replaced_by_a_fresh_one_and_a_fresh_one_is_kept():
    pool = WorkerPool(size=1, idle_recycle_s=3600, task_modules=TEST_TASKS)
    try:
        pool.prestart()
        fresh = pool.pids()
        assert pool.recycle_idle() == 0  # never used: nothing to give back
        used = run(pool, "test.ping")[1].result[0]["pid"]
        assert pool.recycle_idle() == 0  # not idle long enough
        pool.idle_recycle_s = 0.01
        time.sleep(0.05)
        assert pool.recycle_idle() == 1
        replacement = pool.pids()
        assert len(replacement) == 1 and replacement != fresh and used not in replacement
        with pytest.raises(ProcessLookupError):
            os.kill(used, 0)
        assert run(pool, "test.ping")[1].state == DONE
    finally:
        pool.close()


def test_workers_exit_when_the_server_closes_their_pipe():
    pool = WorkerPool(size=2, task_modules=TEST_TASKS)
    pool.prestart()
    pids = pool.pids()
    assert len(pids) == 2
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_worker_error_is_an_engine_error_for_the_job_manager():
    assert issubclass(WorkerError, LanternError)
