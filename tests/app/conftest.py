"""Fixtures shared by the page tests."""

import dataclasses
import time

import pytest


@pytest.fixture
def trusted(monkeypatch):
    """The app in trusted mode (``LANTERN_TRUSTED=1``): pages offer to load a saved detector archive."""
    from ui import settings

    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, trusted_mode=True))


@pytest.fixture(autouse=True)
def no_jobs_left_behind():
    """Cancel what a test's page left running (e.g. a CEM warm-up): AppTest sessions share one owner id, so a
    leftover job would count against the next test's per-session limit and hold a job slot."""
    yield
    from ui import runtime

    manager = runtime.manager()
    with manager._lock:
        owners = {job.owner for job in manager._running + manager._queue}
    for owner in owners:
        manager.cancel_owner(owner)
    deadline = time.time() + 30
    while time.time() < deadline and manager.stats()["running"] + manager.stats()["queued"]:
        time.sleep(0.1)
