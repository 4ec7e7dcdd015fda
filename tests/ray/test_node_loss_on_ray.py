"""A node leaving a real multi-node Ray cluster mid-job (issue #18: "a job whose worker or node dies fails with a
message; the session and the server keep working").

A local cluster on loopback (``ray.cluster_utils.Cluster``, dynamic ports): a head with no CPU slot (no job can run
there; the server's progress channel lives there) and one worker node at a time. A job runs on the worker node;
the node is removed while the job reports progress (its raylet and workers end, shut down or killed, as a machine
leaving or crashing). The job must fail, within a bounded wait, with a message a user understands; then, with a new
node in the cluster, the same manager runs the next job to the end, its progress arriving through the same channel
actor. One cluster serves the module; every wait is bounded.
"""

from __future__ import annotations

import time

import pytest
import ray

from jobs.ray_backend import RayBackend
from jobs.runner import DONE, FAILED, RUNNING, JobManager
from tests.ray import job_functions as jf
from tests.ray.test_jobs_on_ray import TIMEOUT, wait_until

pytestmark = pytest.mark.ray

FAIL_WITHIN_S = 90  # a lost node is noticed in well under a second here; far less than the job's 600 s
NODE_LEFT = "the machine running the job left the Ray cluster; start the job again."
WORKER_STOPPED = "the worker process running the job stopped unexpectedly"  # where Ray sees the worker go first


@pytest.fixture(scope="module")
def cluster():
    """A head with no CPU slot, and the server's backend joined to it, its channel actor started on the head."""
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another test left Ray running in this process"
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0})
    backend = RayBackend(cluster.address, cancel_grace_s=2.0)
    try:
        backend.start()  # before any worker node: the channel actor (no CPU) can only be placed on the head
        yield cluster, backend
    finally:
        backend.close()
        cluster.shutdown()


@pytest.fixture
def manager(cluster):
    _, backend = cluster
    manager = JobManager(max_concurrent=1, max_per_session=1, backend=backend)
    yield manager
    for job in list(manager._running + manager._queue):
        manager.cancel(job)


def _channel_node(backend) -> str:
    """The id of the node the backend's progress channel actor runs on."""
    return ray.get(backend._channel.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()),
                   timeout=60)


@pytest.mark.parametrize("graceful", [True, False], ids=["node-shut-down", "node-killed"])
def test_a_job_whose_node_leaves_fails_with_a_message_and_the_next_job_runs_on_a_new_node(cluster, manager,
                                                                                          graceful):
    cluster, backend = cluster
    channel = backend._channel
    assert _channel_node(backend) == cluster.head_node.node_id
    node = cluster.add_node(num_cpus=1)
    replacement = None
    try:
        cluster.wait_for_nodes(timeout=120)
        job = manager.submit_job("alice", "train", jf.train, jf.Request(seconds=600))
        assert wait_until(lambda: len(job.events) >= 3 or not job.active)
        assert job.state == RUNNING, job.error  # running on the worker node (the head has no CPU slot)

        left = time.monotonic()
        cluster.remove_node(node, allow_graceful=graceful)  # its raylet and the job's worker process end
        manager.wait(job, FAIL_WITHIN_S)
        print(f"node removed (graceful={graceful}) -> job {job.state} in {time.monotonic() - left:.2f} s: {job.error}")
        assert job.state == FAILED, (job.state, job.message)  # not still running: the backend did not hang
        assert job.error.startswith((NODE_LEFT, WORKER_STOPPED)), job.error  # a sentence, not Ray's raw text
        assert "Traceback" not in job.error and "node ID" not in job.error
        assert job.result is None and manager.stats()["running"] == 0  # its slot is free again

        replacement = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=120)
        after = manager.submit_job("alice", "train", jf.train, jf.Request(seconds=2))
        assert wait_until(lambda: after.events or not after.active)
        assert after.state == RUNNING, after.error  # progress arrived while it ran
        manager.wait(after, TIMEOUT)
        assert after.state == DONE and after.result == "trained", after.error
        assert len(after.events) == int(2 / 0.02)  # every progress event arrived
        # The same channel actor carried it: it lives on the head and outlived the node.
        assert backend._channel is channel and _channel_node(backend) == cluster.head_node.node_id
    finally:
        for leftover in (node, replacement):
            if leftover is not None and leftover in cluster.worker_nodes:
                cluster.remove_node(leftover)
