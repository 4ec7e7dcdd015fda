"""The `lantern` command on Ray: the same rows, scores and order as in the process, work spread over the
nodes of a cluster, and a worker killed mid-run ending the run with a clear error instead of a hang.

Each test runs the command in its own interpreter (as a user would), with timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli_helpers import ROOT, make_aegmm_archive, run_lantern, tabular_frame

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_aegmm_archive(tmp_path_factory.mktemp("ray") / "aegmm.lantern.zip")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows")
    frame = tabular_frame(6000, seed=9)
    frame.loc[[5, 4000], "a"] = np.nan
    frame.to_csv(folder / "rows.csv", index=False)
    # Row groups of uneven sizes, written apart: each is read by its own task on Ray.
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pq.ParquetWriter(folder / "rows.parquet", table.schema) as writer:
        for start, stop in ((0, 2500), (2500, 2700), (2700, 6000)):
            writer.write_table(table.slice(start, stop - start), row_group_size=1500)
    return folder


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ray_local_gives_the_in_process_rows_scores_and_order(archive, rows, tmp_path, suffix):
    common = ["score", "--detector", archive, "--input", rows / f"rows{suffix}", "--batch-size", 500,
              "--feature-scores", "--keep", "id"]
    here = run_lantern(*common, "--output", tmp_path / "here.csv")
    assert here.returncode == 0, here.stderr[-2000:]
    # --ray local starts its own runtime, whatever RAY_ADDRESS says (here: nothing listens there).
    on_ray = run_lantern(*common, "--output", tmp_path / "ray.csv", "--ray", "local", "--workers", 2,
                         env={"RAY_ADDRESS": "127.0.0.1:9"})
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    expected, got = pd.read_csv(tmp_path / "here.csv"), pd.read_csv(tmp_path / "ray.csv")
    pd.testing.assert_frame_equal(got, expected)
    assert got["id"].tolist() == [f"r{i}" for i in range(6000)]
    assert got.loc[[5, 4000], "status"].str.startswith("skipped").all()
    assert on_ray.stdout.strip().splitlines()[-1].startswith("lantern score: 6,000 rows")


@pytest.fixture
def two_node_cluster():
    """A head and a second node on loopback (Ray's test cluster utility), torn down after the test."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2})
    try:
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes(timeout=120)
        yield cluster.address, {cluster.head_node.node_id, worker.node_id}
    finally:
        cluster.shutdown()


def test_a_two_node_cluster_scores_on_both_nodes_in_input_order(archive, rows, tmp_path, two_node_cluster):
    address, node_ids = two_node_cluster
    done = run_lantern("score", "--detector", archive, "--input", rows / "rows.parquet", "--output",
                       tmp_path / "cluster.parquet", "--batch-size", 250, "--ray", address, "--workers", 2,
                       "--node-column", "--keep", "id", timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = pd.read_parquet(tmp_path / "cluster.parquet")
    assert scored["id"].tolist() == [f"r{i}" for i in range(6000)]
    assert set(scored["ray_node"]) == node_ids
    here = run_lantern("score", "--detector", archive, "--input", rows / "rows.parquet", "--output",
                       tmp_path / "here.parquet", "--batch-size", 250)
    assert here.returncode == 0, here.stderr[-2000:]
    pd.testing.assert_frame_equal(scored.drop(columns=["ray_node", "id"]),
                                  pd.read_parquet(tmp_path / "here.parquet"))


def _descendants(pid: int) -> dict[int, str]:
    """Processes below ``pid`` (from /proc), with their command lines."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found[child] = commands.get(child, "")
                frontier.append(child)
    return found


def test_a_worker_killed_mid_run_ends_the_run_with_a_clear_error(archive, tmp_path):
    source = tmp_path / "many.csv"
    tabular_frame(150_000, seed=3).to_csv(source, index=False)
    output = tmp_path / "scores.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "engine", "score", "--detector", str(archive), "--input", str(source),
               "--output", str(output), "--batch-size", 300, "--ray", "local", "--workers", "1"]
    run = subprocess.Popen(list(map(str, command)), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        partial = output.with_name(output.name + ".partial")
        deadline = time.monotonic() + 240
        while not partial.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the first scored batch has been written: the actor is mid-run
        assert run.poll() is None, "the run ended before a worker could be killed"
        actors = [pid for pid, cmd in _descendants(run.pid).items() if "ScoreActor" in cmd]
        assert actors, "no scoring actor found"
        os.kill(actors[0], signal.SIGKILL)
        _, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("lantern: error: a Ray worker died during the run"), err[-3000:]
    assert "no output was written" in last
    assert not output.exists() and not partial.exists()


@pytest.fixture(scope="module")
def onnx_classifier(tmp_path_factory):
    """A scikit-learn classifier as an ONNX file, its training rows and rows to explain."""
    pytest.importorskip("engine.predictors", reason="engine.predictors (own models) is not on this branch yet")
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression(max_iter=300).fit(X, y)
    (folder / "model.onnx").write_bytes(to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
                                        .SerializeToString())
    columns = ["f0", "f1", "f2", "f3"]
    pd.DataFrame(X[:250], columns=columns).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(X[250:258], columns=columns).to_parquet(folder / "rows.parquet", index=False)
    return folder


def test_explanations_on_ray_equal_the_in_process_ones_line_for_line(onnx_classifier, tmp_path):
    folder = onnx_classifier
    common = ["explain", "anchors", "--model", folder / "model.onnx", "--train", folder / "train.csv",
              "--input", folder / "rows.parquet", "--batch-size", 3, "--seed", 7]
    here = run_lantern(*common, "--output", tmp_path / "here.jsonl")
    assert here.returncode == 0, here.stderr[-2000:]
    on_ray = run_lantern(*common, "--output", tmp_path / "ray.jsonl", "--ray", "local", "--workers", 2)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    import json

    def records(path):
        out = [json.loads(line) for line in path.read_text().splitlines()]
        for record in out:
            # A work counter, not part of the explanation: the training rows' predictions are computed once per
            # explainer, so they are counted on the first row each worker explains.
            record["explanation"]["data"]["raw"]["search"].pop("n_predicted_rows")
        return out

    on_ray_records = records(tmp_path / "ray.jsonl")
    assert [r["row"] for r in on_ray_records] == list(range(8))
    assert on_ray_records == records(tmp_path / "here.jsonl")
