"""``--ray local|ADDRESS``: the ``lantern`` command's work on a Ray runtime.

Imported only when ``--ray`` is given, so a plain run never starts (or imports) Ray.

- **Scoring** is a Ray Data pipeline: ``read_csv`` / ``read_parquet`` (only the needed columns, the
  same Arrow conversion as in the process; on a cluster the read tasks are pinned to the driver's node,
  so the input need only be there) → ``map_batches`` with :class:`ScoreActor`, an actor pool
  in which every actor builds the detector once from the archive's *bytes* (so a node that cannot see
  the driver's files still gets it) → batches streamed back to the driver in input order
  (``preserve_order``), which numbers the rows and writes them. Row-wise detectors only: a Seq2Seq
  series must be read in order by one process.
- **Explanations** go to a pool of :class:`ExplainActor`: each fits one explainer and explains a
  batch of rows at a time; batches are handed out as actors free up and the answers are put back in
  input order. One anchor search is never split across workers.

A worker that dies is not restarted (``max_restarts=0``): the run stops with an error naming it
rather than retrying quietly or waiting for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from engine.cli import io
from engine.cli.io import UsageError
from engine.errors import LanternError

# The local runtime's object store: enough for a few batches in flight, small beside the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "-1"}


class RayWorkerError(LanternError, RuntimeError):
    """A Ray worker or node died, or a remote step failed, during a run."""


@contextlib.contextmanager
def ray_runtime(address: str, workers: int | None) -> Iterator[int]:
    """Start (``'local'``) or join (an address) a Ray runtime for the run; yields the number of workers to use."""
    import ray

    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}.")
    common = dict(log_to_driver=False, configure_logging=True, logging_level="ERROR",
                  runtime_env={"env_vars": _QUIET_ENV})
    try:
        if address == "local":
            workers = workers or max(1, os.cpu_count() or 1)
            # One CPU slot per actor plus one for the reading task, so reading never waits for a free actor.
            ray.init(num_cpus=workers + 1, include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     **common)
        else:
            ray.init(address=address, **common)
            workers = workers or 2
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--ray {address}: cannot start or reach a Ray runtime ({io._first_line(exc)}).") from exc
    try:
        yield workers
    finally:
        ray.shutdown()


def _threads_per_worker(address: str, workers: int) -> int | None:
    """On the local runtime, split this machine's cores between the actors (each TensorFlow would take all)."""
    if address != "local":
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def _limit_tensorflow_threads(threads: int | None) -> None:
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something in this worker; keep its settings
        pass


class ScoreActor:
    """One Ray Data worker: the detector built once from the archive's bytes, then batch after batch."""

    def __init__(self, archive: bytes, plan, threads: int | None, node_column: bool) -> None:
        _limit_tensorflow_threads(threads)
        from engine.saving import load_detector

        self.detector = load_detector(archive)
        self.plan = plan
        self.node_id = None
        if node_column:
            import ray

            self.node_id = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from engine.cli.score import score_rows

        out = score_rows(self.detector, batch, self.plan)
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
        path = str(Path(input_path).resolve())
        read_args: dict[str, Any] = {}
        if address != "local":
            # The input need only be on this machine: its read tasks run on the driver's node.
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            read_args["ray_remote_args"] = {"scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # ray_remote_args: no named equivalent in 2.60
            if io.file_format(input_path, "input") == "parquet":
                dataset = ray.data.read_parquet(path, columns=plan.columns, partitioning=None, **read_args)
            else:
                dataset = ray.data.read_csv(
                    path, partitioning=None,
                    read_options=pacsv.ReadOptions(block_size=min(io.CSV_BLOCK_BYTES, 1024 * 1024)),
                    convert_options=io.csv_convert_options(plan.columns, plan.features), **read_args,
                )
        with warnings.catch_warnings():
            # max_restarts=0 is the documented way to turn off actor restarts in map_batches; Ray 2.60 warns on
            # any extra remote argument.
            warnings.simplefilter("ignore", DeprecationWarning)
            scored = dataset.map_batches(
                ScoreActor,
                fn_constructor_kwargs={"archive": archive, "plan": plan, "node_column": node_column,
                                       "threads": _threads_per_worker(address, workers)},
                batch_size=plan.batch_size, batch_format="pyarrow", zero_copy_batch=True,
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, max_restarts=0,
            )
        summary = Summary()
        try:
            for table in scored.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
                writer.write(with_row_numbers(table, summary.rows))
                summary.add(table)
                progress.update(table.num_rows)
        except Exception as exc:  # noqa: BLE001 - Ray wraps what went wrong remotely; unwrap it below
            user_error = _user_error(exc)
            if user_error is not None:
                raise user_error from exc
            raise RayWorkerError(_ray_failure(exc)) from exc
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
        _limit_tensorflow_threads(threads)
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
        threads = _threads_per_worker(address, workers)
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
