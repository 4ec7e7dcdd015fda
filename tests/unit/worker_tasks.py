"""Tasks for the worker-process tests, loaded by a test pool through ``task_modules``."""

import os
import sys
import time

import numpy as np

from engine.errors import DataError
from engine.training import TrainingEvent

TASKS = {}


def _task(fn):
    TASKS[f"test.{fn.__name__}"] = fn
    return fn


@_task
def ping(job, params, arrays):
    """Who ran me, with what, and whether streamlit was imported there."""
    return ({"pid": os.getpid(), "params": params, "streamlit": "streamlit" in sys.modules,
             "nice": os.getpriority(os.PRIO_PROCESS, 0)},
            {name: array * 2 for name, array in arrays.items()})


@_task
def progress(job, params, arrays):
    for step in range(1, 4):
        job.report(TrainingEvent("batch", 1, 1, step, 3, 1.0 / step, {}, 0.01 * step))
    job.set_stage("scoring", 1.0)
    return {"done": True}, {}


@_task
def sleep(job, params, arrays):
    """Sleeps in small steps, honouring cancellation like the training loop does."""
    deadline = time.monotonic() + float(params["seconds"])
    while time.monotonic() < deadline:
        job.cancel.raise_if_cancelled()
        time.sleep(0.02)
    return {"slept": params["seconds"]}, {}


@_task
def stubborn(job, params, arrays):
    """Ignores cancellation (like native code that never returns to Python)."""
    time.sleep(float(params["seconds"]))
    return {}, {}


@_task
def bad_data(job, params, arrays):
    raise DataError("the column 'x' is empty")


@_task
def bug(job, params, arrays):
    return {}, {"x": np.ones(2) / 0 if params.get("ok") else 1 / 0}


@_task
def die(job, params, arrays):
    os._exit(3)
