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
