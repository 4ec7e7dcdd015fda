"""Fixtures for the tests that run the server's jobs on a local Ray runtime (started once per module)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_backend():
    """A :class:`jobs.ray_backend.RayBackend` on a local runtime of 2 CPU slots, shut down after the module."""
    from jobs.ray_backend import RayBackend

    backend = RayBackend("local", num_cpus=2, cancel_grace_s=2.0)
    backend.start()
    yield backend
    backend.close()


@pytest.fixture
def manager(ray_backend):
    """A job manager (2 slots, 2 per session) whose jobs run on :func:`ray_backend`; leftover jobs are cancelled."""
    from jobs.runner import JobManager

    manager = JobManager(max_concurrent=2, max_per_session=2, backend=ray_backend)
    yield manager
    for job in list(manager._running + manager._queue):
        manager.cancel(job)
