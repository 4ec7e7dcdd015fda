"""``--ray local|ADDRESS``: the ``lantern`` command's work on a Ray runtime.

Imported only when ``--ray`` is given, so a plain run never starts (or imports) Ray.

- **Scoring** is a Ray Data pipeline: read tasks (one per Parquet row group, one for a CSV file) that
  run the command's own streaming reader, so the numbers are parsed exactly as in the process, and
  number every row (on a cluster they are pinned to the driver's node, so the input need only be
  there) → ``map_batches`` with :class:`ScoreActor`, an actor pool
  in which every actor builds the detector once from the archive's *bytes* (so a node that cannot see
  the driver's files still gets it) → batches streamed back to the driver in input order
  (``preserve_order``, and the row numbers: a batch that comes back ahead of its turn waits on the
  driver until the rows before it are written). Row-wise detectors only: a Seq2Seq
  series must be read in order by one process.
- **Explanations** go to a pool of :class:`ExplainActor`: each fits one explainer and explains a
  batch of rows at a time; batches are handed out as actors free up and the answers are put back in
  input order. One anchor search is never split across workers.

A worker that dies is not restarted (``max_restarts=0``): the run stops with an error naming it
rather than retrying quietly or waiting for ever.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from engine.cli import io
from engine.cli.io import UsageError
from engine.errors import LanternError

# The local runtime's object store: enough for a few batches in flight, small beside the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "-1"}


class RayWorkerError(LanternError, RuntimeError):
    """A Ray worker or node died, or a remote step failed, during a run."""


def check_reachable(address: str, timeout_s: float = 5.0, *, what: str = "--ray") -> None:
    """Refuse an address where no Ray head listens, at once (``ray.init`` would wait for minutes).

    ``what`` names the setting that gave the address in the message (``--ray``, ``LANTERN_RAY_ADDRESS``).
    """
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"{what} {address}: expected 'local', 'auto' or the head node's HOST:PORT (e.g. 10.0.0.5:6379).")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"{what} {address}: no Ray head answers there ({exc.strerror or exc}); start one with "
                         "`ray start --head` or check the address.") from exc


def connect(address: str, *, num_cpus: int | None = None, runtime_env: dict | None = None,
            what: str = "--ray") -> None:
    """Start a local Ray runtime (``address='local'``, ``num_cpus`` CPU slots) or join the cluster at ``address``.

    The CLI (:func:`ray_runtime`) and the server's job backend (:mod:`jobs.ray_backend`) start Ray the same way:
    quiet, CPU-only TensorFlow in the workers, a small object store on a local runtime, and an address where
    no head listens refused at once. ``runtime_env`` adds to the workers' environment (its ``env_vars`` are
    merged with the quiet ones). Raises :class:`~engine.cli.io.UsageError` naming ``what`` when Ray cannot start.
    """
    if address != "local":
        check_reachable(address, what=what)
    import ray

    extra = dict(runtime_env or {})
    env = {**extra, "env_vars": {**_QUIET_ENV, **extra.get("env_vars", {})}}
    common = dict(log_to_driver=False, configure_logging=True, logging_level="ERROR", runtime_env=env)
    try:
        if address == "local":
            # address="local": always a new runtime, even where RAY_ADDRESS is set or another one runs here.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"{what} {address}: cannot start or reach a Ray runtime ({io._first_line(exc)}).") from exc


@contextlib.contextmanager
def ray_runtime(address: str, workers: int | None) -> Iterator[int]:
    """Start (``'local'``) or join (an address) a Ray runtime for the run; yields the number of workers to use."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}.")
    if address == "local":
        workers = workers or max(1, os.cpu_count() or 1)
        # One CPU slot per actor plus one for the reading task, so reading never waits for a free actor.
        connect(address, num_cpus=workers + 1)
    else:
        connect(address)
        workers = workers or 2
    import ray

    try:
        yield workers
    finally:
        ray.shutdown()


def threads_per_worker(address: str, workers: int) -> int | None:
    """On the local runtime, split this machine's cores between the actors (each TensorFlow would take all)."""
    if address != "local":
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def limit_tensorflow_threads(threads: int | None) -> None:
    """Give this process's TensorFlow ``threads`` compute threads (None: unchanged)."""
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something in this worker; keep its settings
        pass


ROW_KEY = "__lantern_row"


def _read_unit(units: pa.Table, *, columns: list[str], numeric: list[str], batch_size: int) -> Iterator[pa.Table]:
    """A Ray Data step: read one piece of the input (see :func:`engine.cli.io.read_units`), rows numbered."""
    for unit in units.to_pylist():
        first = int(unit["first_row"])
        group = None if unit["row_group"] < 0 else int(unit["row_group"])
        for table in io.read_batches(unit["path"], columns, numeric, batch_size, row_group=group):
            numbers = np.arange(first, first + table.num_rows, dtype=np.int64)
            first += table.num_rows
            yield table.append_column(ROW_KEY, pa.array(numbers))


def _contiguous_runs(table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """``table``'s rows in order of their numbers, cut where the numbers jump: (first number, run)."""
    numbers = table.column(ROW_KEY).to_numpy()
    if numbers.size and np.any(np.diff(numbers) < 0):
        order = np.argsort(numbers, kind="stable")
        table, numbers = table.take(pa.array(order)), numbers[order]
    cuts = [0, *(np.flatnonzero(np.diff(numbers) != 1) + 1).tolist(), len(numbers)]
    for start, stop in zip(cuts[:-1], cuts[1:]):
        if stop > start:
            yield int(numbers[start]), table.slice(start, stop - start)


class ScoreActor:
    """One Ray Data worker: the detector built once from the archive's bytes, then batch after batch."""

    def __init__(self, archive: bytes, plan, threads: int | None, node_column: bool) -> None:
        limit_tensorflow_threads(threads)
        from engine.saving import load_detector

        self.detector = load_detector(archive)
        self.plan = plan
        self.node_id = None
        if node_column:
            import ray

            self.node_id = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from engine.cli.score import score_rows

        out = score_rows(self.detector, batch, self.plan).append_column(ROW_KEY, batch.column(ROW_KEY))
        if self.node_id is not None:
            out = out.append_column("ray_node", pa.array([self.node_id] * out.num_rows, pa.string()))
        return out


def score_on_ray(archive: bytes, plan, input_path, writer: io.TableWriter, progress, *, address: str,
                 workers: int | None = None, node_column: bool = False):
    """Score ``input_path`` with Ray Data; writes through ``writer`` in input order and returns a Summary."""
    from engine.cli.score import ROW_WISE, Summary, with_row_numbers

    if plan.detector_class not in ROW_WISE:
        raise UsageError(f"--ray: a {plan.detector_class} reads the file as one series, in order, so it runs in "
                         "the process; leave out --ray.")
    with ray_runtime(address, workers) as workers:
        import ray
        import ray.data
        for name in ("ray", "ray.data"):  # after Ray Data set up its logging; the command reports failures itself
            logging.getLogger(name).setLevel(logging.CRITICAL)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the command shows its own bar
        context.print_on_execution_start = False
        # Blocks of about one batch, so that even a file of a few row groups spreads over every worker.
        row_bytes = 8 * (len(plan.columns) + 1)
        context.target_max_block_size = min(max(plan.batch_size * row_bytes, 64 * 1024), 128 * 1024 * 1024)
        if address != "local":
            context.scheduling_strategy = "SPREAD"  # actors on as many nodes as there are
        # Read with the command's own reader, one task per Parquet row group (or one for a CSV file), each
        # row numbered from the file's metadata; the driver writes rows by these numbers, so the output is in
        # input order even where a stage hands batches on out of order.
        units = io.read_units(Path(input_path).resolve())
        read_args: dict[str, Any] = {}
        if address != "local":
            # The input need only be on this machine: its read tasks run on the driver's node.
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            read_args["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=False)
        with warnings.catch_warnings():
            # max_restarts=0 is the documented way to turn off actor restarts in map_batches, and node affinity
            # has no named parameter; Ray 2.60 warns on any such remote argument.
            warnings.simplefilter("ignore", DeprecationWarning)
            rows = ray.data.from_items(units, override_num_blocks=len(units)).map_batches(
                _read_unit, batch_size=1, batch_format="pyarrow", num_cpus=1,
                fn_kwargs={"columns": plan.columns, "numeric": plan.features, "batch_size": plan.batch_size},
                **read_args,
            )
            scored = rows.map_batches(
                ScoreActor,
                fn_constructor_kwargs={"archive": archive, "plan": plan, "node_column": node_column,
                                       "threads": threads_per_worker(address, workers)},
                batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, max_restarts=0,
            )
        summary = Summary()
        ahead: list[tuple[int, int, pa.Table]] = []  # runs of rows that came back before their turn (a heap)
        arrivals = itertools.count()
        try:
            for table in scored.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
                for first, run in _contiguous_runs(table):
                    heapq.heappush(ahead, (first, next(arrivals), run))
                while ahead and ahead[0][0] == summary.rows:
                    run = heapq.heappop(ahead)[2].drop_columns([ROW_KEY])
                    writer.write(with_row_numbers(run, summary.rows))
                    summary.add(run)
                    progress.update(run.num_rows)
        except Exception as exc:  # noqa: BLE001 - Ray wraps what went wrong remotely; unwrap it below
            user_error = _user_error(exc)
            if user_error is not None:
                raise user_error from exc
            raise RayWorkerError(_ray_failure(exc)) from exc
        if ahead:
            raise RayWorkerError(f"rows from {ahead[0][0]:,} on came back but row {summary.rows:,} never did; "
                                 "no output was written.")
        return summary


def _user_error(exc: BaseException) -> BaseException | None:
    """The bad-input error (a DataError or UsageError) a remote batch raised, if that is what failed."""
    from engine.errors import DataError

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (DataError, UsageError)):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    return None


def _ray_failure(exc: BaseException) -> str:
    """One line for a run that failed on Ray: what died or failed, and that nothing was written."""
    text = io._first_line(exc)
    if "died" in text.lower() or "Died" in type(exc).__name__:
        return f"a Ray worker died during the run ({type(exc).__name__}: {text}); no output was written."
    return f"the run failed on Ray ({type(exc).__name__}: {text}); no output was written."


class ExplainActor:
    """One explainer, fitted once per actor on the training rows; explains a batch of rows per call."""

    def __init__(self, model_bytes: bytes, model_name: str, spec, X_train, threads: int | None) -> None:
        limit_tensorflow_threads(threads)
        from engine.cli.explain import build_explainer, model_on_worker

        self.spec = spec
        self.explainer = build_explainer(spec, model_on_worker(model_bytes, model_name), X_train)

    def explain(self, X, first_row: int) -> list[dict]:
        from engine.cli.explain import explain_rows

        return explain_rows(self.explainer, self.spec, X, first_row)


def explain_on_ray(model_path, spec, X_train, batches, writer, progress, *, address: str,
                   workers: int | None = None, timeout_s: float | None = None) -> None:
    """Explain batches of rows on a pool of :class:`ExplainActor`; writes every batch's lines in input order.

    At most two batches per actor are in flight, so memory stays bounded whatever the file's size.
    """
    with ray_runtime(address, workers) as workers:
        import ray
        from ray.util import ActorPool

        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if address != "local":
            options["scheduling_strategy"] = "SPREAD"
        remote = ray.remote(ExplainActor).options(**options)
        model_bytes = Path(model_path).read_bytes()
        train_ref = ray.put(X_train)
        threads = threads_per_worker(address, workers)
        actors = [remote.remote(model_bytes, Path(model_path).name, spec, train_ref, threads)
                  for _ in range(workers)]
        pool = ActorPool(actors)
        in_flight, next_row = 0, 0

        def collect() -> None:
            records = pool.get_next(timeout=timeout_s)
            writer.write(records)
            progress.update(len(records))

        try:
            for X in batches:
                pool.submit(lambda actor, job: actor.explain.remote(*job), (X, next_row))
                next_row += len(X)
                in_flight += 1
                if in_flight >= 2 * workers:
                    collect()
                    in_flight -= 1
            while pool.has_next():
                collect()
        except Exception as exc:  # noqa: BLE001 - Ray wraps what went wrong remotely; unwrap it
            user_error = _user_error(exc)
            if user_error is not None:
                raise user_error from exc
            if isinstance(exc, (UsageError, LanternError)):
                raise
            raise RayWorkerError(_ray_failure(exc)) from exc
