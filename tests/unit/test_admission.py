"""Admission of heavy work as the app wires it: the real liveness probe, the limits' settings, the job logs,
and the queue position and Cancel button on a real page.

tests/unit/test_jobs.py specifies the JobManager itself with stand-in liveness probes; this file checks the
pieces around it that the shared demo relies on: ``ui.runtime.session_is_alive`` against Streamlit's Runtime,
``ui.settings.load_settings`` sizing the limit to the cores, the ``lantern.jobs`` JSON lines an operator reads,
and what a visitor sees on the Tabular outliers page while the server is full.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ui.runtime
from jobs.runner import CANCELLED, DONE, RUNNING, JobManager
from ui.runtime import release_free_memory, rss_mib, session_is_alive
from tests.unit.job_helpers import TIMEOUT, cancellable, wait_until
from ui.settings import load_settings


class FakeRuntime:
    """Stands in for Streamlit's Runtime singleton: a set of connected session ids."""

    def __init__(self, connected):
        self.connected = set(connected)

    def is_active_session(self, session_id):
        return session_id in self.connected


@pytest.fixture
def runtime(monkeypatch):
    fake = FakeRuntime({"tab-a", "tab-b"})
    monkeypatch.setattr(ui.runtime.Runtime, "exists", staticmethod(lambda: True))
    monkeypatch.setattr(ui.runtime.Runtime, "instance", staticmethod(lambda: fake))
    return fake


def test_the_liveness_probe_follows_the_runtimes_connected_sessions(runtime):
    assert session_is_alive("tab-a") and session_is_alive("tab-b")
    runtime.connected.discard("tab-a")  # the browser tab closed: Streamlit no longer counts it as active
    assert not session_is_alive("tab-a") and session_is_alive("tab-b")
    assert session_is_alive("local")  # scripts and tests outside a server are never "gone"


def test_without_a_server_every_owner_counts_as_alive(monkeypatch):
    monkeypatch.setattr(ui.runtime.Runtime, "exists", staticmethod(lambda: False))
    assert session_is_alive("any-session-id")


def test_a_closed_tab_loses_its_job_and_the_other_tab_gets_the_slot(runtime, caplog):
    """The app's own probe wired into the watchdog: closing a tab cancels its running job, nobody else's."""
    caplog.set_level(logging.INFO, logger="lantern.jobs")
    manager = JobManager(max_concurrent=1, is_owner_alive=session_is_alive, watchdog_interval=0.02)
    closing = manager.submit("tab-a", "train A", cancellable)
    assert wait_until(lambda: closing.state == RUNNING)
    release = threading.Event()
    waiting = manager.submit("tab-b", "train B", lambda job: release.wait(TIMEOUT) and "B done")
    assert manager.queue_position(waiting) == 1
    runtime.connected.discard("tab-a")
    assert manager.wait(closing, timeout=TIMEOUT).state == CANCELLED
    assert wait_until(lambda: waiting.state == RUNNING)  # the freed slot goes to the open tab
    release.set()
    assert manager.wait(waiting, timeout=TIMEOUT).state == DONE and waiting.result == "B done"
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lantern.jobs"]
    gone = [r for r in records if r["event"] == "owner_gone"]
    assert [(r["job"], r["owner"]) for r in gone] == [(closing.id, "tab-a")]
    finished = {r["job"]: r for r in records if r["event"] == "finished"}
    assert finished[closing.id]["outcome"] == "cancelled" and finished[waiting.id]["outcome"] == "done"


def test_job_log_lines_are_json_with_queue_wait_duration_and_outcome(caplog):
    caplog.set_level(logging.INFO, logger="lantern.jobs")
    manager = JobManager(max_concurrent=1)
    gate = threading.Event()
    first = manager.submit("alice-session-id", "first", lambda job: gate.wait(TIMEOUT))
    second = manager.submit("bob", "second", lambda job: 1 / 0)
    time.sleep(0.05)
    gate.set()
    manager.wait(first, timeout=TIMEOUT)
    manager.wait(second, timeout=TIMEOUT)
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lantern.jobs" and r.getMessage().startswith("{")]
    events = [(r["event"], r["job"]) for r in records]
    assert events.index(("queued", second.id)) < events.index(("started", second.id)) < events.index(("finished", second.id))
    started = {r["job"]: r for r in records if r["event"] == "started"}
    finished = {r["job"]: r for r in records if r["event"] == "finished"}
    assert started[second.id]["queue_wait_s"] >= 0.05  # it waited for the first job's slot
    assert finished[first.id]["outcome"] == "done" and finished[first.id]["duration_s"] >= 0.05
    assert finished[second.id]["outcome"] == "failed" and "ZeroDivisionError" in finished[second.id]["error"]
    # Owners are logged shortened: enough to follow one session, not its full id.
    assert {r["owner"] for r in records} == {"alice-se", "bob"}
    assert all({"event", "job", "kind", "label", "owner"} <= set(r) for r in records)


def test_the_admission_limit_is_sized_to_the_cores_and_read_from_the_environment(monkeypatch):
    for name in ("LANTERN_MAX_CONCURRENT_JOBS", "LANTERN_MAX_JOBS_PER_SESSION", "LANTERN_MAX_QUEUE",
                 "LANTERN_JOB_TIME_BUDGET_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    defaults = load_settings()
    assert (defaults.max_concurrent_jobs, defaults.max_jobs_per_session, defaults.max_queue) == (6, 2, 32)
    assert defaults.job_time_budget_s == 300
    monkeypatch.setenv("LANTERN_MAX_CONCURRENT_JOBS", "3")
    monkeypatch.setenv("LANTERN_MAX_QUEUE", "not a number")  # a typo in the environment keeps the default
    monkeypatch.setenv("LANTERN_JOB_TIME_BUDGET_S", "1")  # too small to train anything: raised to the floor
    configured = load_settings()
    assert configured.max_concurrent_jobs == 3 and configured.max_queue == 32 and configured.job_time_budget_s == 5
    monkeypatch.setenv("LANTERN_MAX_CONCURRENT_JOBS", "0")
    assert load_settings().max_concurrent_jobs == 1  # never zero: that would queue every job forever


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a Linux feature")
@pytest.mark.parametrize("nice", ["7", "0"])
def test_a_fresh_server_process_runs_tensorflows_compute_threads_at_the_job_priority(nice):
    """In a new process (as `streamlit run` is), the start-up starts TensorFlow's pools at LANTERN_JOB_NICE."""
    probe = (
        "import glob, os, ui.runtime\n"
        "ui.runtime.bootstrap()\n"
        "for task in glob.glob(f'/proc/{os.getpid()}/task/*'):\n"
        "    if open(task + '/comm').read().strip() == 'tf_Compute':\n"
        "        print(open(task + '/stat').read().rsplit(')', 1)[1].split()[16])\n"
    )
    env = {**os.environ, "LANTERN_JOB_NICE": nice, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    base = os.getpriority(os.PRIO_PROCESS, 0)
    priorities = {int(v) for v in out.stdout.split()}
    expected = {min(19, max(base, int(nice)))} if nice != "0" else {base}
    assert priorities == expected or (nice == "0" and not priorities)


@pytest.mark.skipif(ui.runtime._MALLOC_TRIM is None, reason="needs glibc's malloc_trim")
def test_memory_freed_by_ended_sessions_goes_back_to_the_operating_system(monkeypatch):
    """What a closed session leaves: freed blocks inside the C heap, which RSS still counts until trimmed."""
    monkeypatch.delenv("LANTERN_MEMORY_RELEASE_S", raising=False)
    assert load_settings().memory_release_s == 10  # on by default
    ui.runtime.bootstrap()  # as app.py does (once per process)
    assert any(t.name == "lantern-memory-release" for t in threading.enumerate())
    release_free_memory()
    before = rss_mib()
    blocks = [bytes(2000) + bytes([i % 256]) for i in range(100_000)]  # ~200 MB of heap blocks (not mmap'd)
    survivors = blocks[::500]  # a few live blocks pin the heap, as a running server's objects do
    del blocks
    freed = rss_mib()
    assert freed - before > 100  # freed, yet still resident
    assert release_free_memory()
    assert rss_mib() - before < 50
    del survivors


def test_the_memory_census_counts_what_the_server_holds(monkeypatch):
    import keras

    from jobs.runner import Job
    from ui.runtime import _memory_census

    monkeypatch.delenv("LANTERN_MEMORY_LOG_S", raising=False)
    assert load_settings().memory_log_s == 0  # off unless asked for
    monkeypatch.setenv("LANTERN_MEMORY_LOG_S", "30")
    assert load_settings().memory_log_s == 30

    before = _memory_census()
    assert before["event"] == "memory" and before["rss_mib"] > 0
    held = [keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
            Job(id=1, owner="someone", label="demo", kind="train", fn=lambda job: None)]
    after = _memory_census()
    assert after["keras_models"] > before["keras_models"]
    assert after["jobs"] == before["jobs"] + 1
    del held


@pytest.mark.app
def test_a_full_server_shows_the_queue_position_and_cancel_leaves_the_queue(monkeypatch):
    """Two other sessions' jobs hold the only slot and the head of the queue: Train says 'position 2'."""
    from tests.app.helpers import no_exceptions, page

    manager = ui.runtime.manager()
    monkeypatch.setattr(manager, "max_concurrent", 1)
    monkeypatch.setattr(manager, "max_per_session", 2)
    release = threading.Event()
    others = [manager.submit(f"other-session-{i}", f"other job {i}", lambda job: release.wait(TIMEOUT))
              for i in range(2)]
    try:
        assert wait_until(lambda: others[0].state == RUNNING)
        at = page("tabular_outliers")
        at.run()
        at.number_input(key="aegmm:epochs").set_value(1)
        at.button(key="aegmm:train").click()
        at.run()
        no_exceptions(at)
        job = at.session_state["job::aegmm"]
        assert manager.queue_position(job) == 2
        assert any("Train AEGMM is queued (position 2)" in info.value for info in at.info)
        at.button(key="cancel::aegmm").click()
        at.run()
        no_exceptions(at)
        assert job.state == CANCELLED and job.started is None  # it left the queue without ever running
        assert any("Train AEGMM was cancelled" in w.value for w in at.warning)
        assert manager.queue_position(others[1]) == 1  # the jobs behind it move up
    finally:
        release.set()
        for job in others:
            manager.wait(job, timeout=TIMEOUT)


@pytest.mark.app
def test_a_queued_job_starts_when_the_slot_frees_and_the_page_shows_its_results(monkeypatch):
    """The waiting panel (slow refresh) hands over to the page once the job leaves the queue."""
    from tests.app.helpers import no_exceptions, page, run_until_job_done

    manager = ui.runtime.manager()
    monkeypatch.setattr(manager, "max_concurrent", 1)
    release = threading.Event()
    other = manager.submit("other-session", "other job", lambda job: release.wait(TIMEOUT))
    try:
        assert wait_until(lambda: other.state == RUNNING)
        at = page("tabular_outliers")
        at.run()
        at.number_input(key="aegmm:epochs").set_value(1)
        at.number_input(key="aegmm:max_rows").set_value(500)
        at.button(key="aegmm:train").click()
        at.run()
        no_exceptions(at)
        assert any("Train AEGMM is queued (position 1)" in info.value for info in at.info)
        release.set()
        run_until_job_done(at, "aegmm", timeout=TIMEOUT * 6)
        no_exceptions(at)
        assert at.session_state["job::aegmm"].state == DONE
        assert not any("is queued" in info.value for info in at.info)
        assert any(header.value == "Results" for header in at.header)
    finally:
        release.set()
        manager.wait(other, timeout=TIMEOUT)


def test_the_live_loss_chart_reads_events_while_the_job_appends_them():
    """Regression (found by bench/loadtest.py at N=4): the panel drew the loss from ``job.events`` while the job's
    thread appended to it, and pandas raised "Length of values (2) does not match length of index (3)"."""
    from ui.charts import loss_figure
    from jobs.runner import Job

    job = Job(id=1, owner="a", label="train", kind="train", fn=lambda j: None)
    stop = threading.Event()

    def train():
        step = 0
        while not stop.is_set():
            step += 1
            job.report({"kind": "batch", "epoch": 1, "step": step, "global_step": step, "loss": 1.0 / step})

    writer = threading.Thread(target=train, daemon=True)
    writer.start()
    try:
        assert wait_until(lambda: len(job.events) > 100)
        for _ in range(100):  # before the fix nearly every call failed
            figure = loss_figure(job.events)
            assert len(figure.data) == 1 and len(figure.data[0].x) > 0
    finally:
        stop.set()
        writer.join(timeout=TIMEOUT)
