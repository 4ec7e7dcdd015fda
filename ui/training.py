"""The live job panel: queued position, progress, live loss chart, Cancel, and the outcome.

Usage in a page::

    if st.button("Train"):
        training.start("aegmm", "Train AEGMM", lambda job: fit_and_score(job, ...))
    job = training.panel("aegmm")
    if job is not None and job.state == "done":
        show_results(job.result)

The job lives in ``st.session_state`` (one per key and session), so reruns, slider moves and
other pages do not disturb it. The panel refreshes itself every half second while the job runs,
and every two seconds while it waits in the queue (its position changes slowly, and on a busy
server every waiting session reruns its panel).
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from ui import charts
from jobs.runner import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobLimitError
from ui.runtime import MANAGER, manager, session_id

_REFRESH_S = 0.5  # a running job's progress and live loss chart
_QUEUED_REFRESH_S = 2.0  # a queued job's position: every waiting session reruns this, so it is kept light


def _state_key(key: str) -> str:
    return f"job::{key}"


def current(key: str) -> Job | None:
    """The job last started under ``key`` in this session, if any."""
    return st.session_state.get(_state_key(key))


def _admit(key: str, submit: Callable[[str], Job]) -> Job | None:
    """``submit(session)`` a job under ``key`` unless one runs there; shows a message and returns None when refused."""
    previous = current(key)
    if previous is not None and previous.active:
        st.warning(f"{previous.label} is still {previous.state}; cancel it first or wait for it to finish.")
        return None
    try:
        job = submit(session_id())
    except JobLimitError as exc:
        st.warning(str(exc))
        return None
    st.session_state[_state_key(key)] = job
    return job


def start(key: str, label: str, fn: Callable[[Job], Any], kind: str = "train") -> Job | None:
    """Submit ``fn(job)`` as a job under ``key``, run in a thread of the server (for pages not yet on
    :func:`start_job`); shows a message and returns None when refused."""
    return _admit(key, lambda owner: manager().submit(owner, label, fn, kind=kind))


def start_task(key: str, label: str, task: str, params: dict, arrays: dict,
               finish: Callable[[dict, dict], Any], kind: str = "train") -> Job | None:
    """Submit the :mod:`ui.tasks` task ``task`` as a job under ``key`` (see :func:`start`); being retired.

    A thin shim for the pages not yet moved to :func:`start_job`: the task runs in the job's thread with the
    server's time budget, with ``params`` JSON round-tripped as before; ``finish(values, arrays)`` builds the
    job's result from its answer.
    """
    import json

    import numpy as np

    from ui.settings import SETTINGS

    def run(job: Job) -> Any:
        from ui.tasks import TASKS

        values = json.loads(json.dumps({**params, "time_budget": SETTINGS.job_time_budget_s}))
        answer, out = TASKS[task](job, values, {name: np.asarray(array) for name, array in arrays.items()})
        return finish(json.loads(json.dumps(answer)), out)

    return start(key, label, run, kind=kind)


def start_job(key: str, label: str, fn: Callable[[Any, Any], Any], request: Any, *, kind: str = "train",
              context: Any = None) -> Job | None:
    """Run the job function ``fn(request, progress)`` (see :mod:`jobs`) under ``key`` on the job runner.

    ``fn`` is passed by reference and runs where the runner's backend puts it (a thread of the server, or a
    Ray worker with ``LANTERN_RAY_ADDRESS`` set); its answer becomes the job's result. ``context`` stays with
    the job in this process (the page's own data needed to show the answer) and is never sent to where the
    job runs. Shows a message and returns None when refused (see :func:`start`).
    """
    from ui.settings import SETTINGS

    return _admit(key, lambda owner: manager().submit_job(owner, label, fn, request, kind=kind, context=context,
                                                         time_budget=SETTINGS.job_time_budget_s))


def outcome(key: str, build: Callable[[Any, Any], Any]) -> Any:
    """The page's view of the finished job under ``key``: ``build(answer, context)``, built once, else None.

    ``build`` runs in the page's script thread the first time the answer is shown (never in the job's thread)
    and its value is kept with the job, so slider moves and reruns reuse it.
    """
    job = current(key)
    if job is None or job.state != DONE:
        return None
    if job.view is None:
        job.view = build(job.result, job.context)
    return job.view


def result(key: str) -> Any:
    """The result of the finished job under ``key``, else None."""
    job = current(key)
    return job.result if job is not None and job.state == DONE else None


def forget(key: str) -> None:
    """Drop the job under ``key`` (cancelling it if it still runs)."""
    job = st.session_state.pop(_state_key(key), None)
    if job is not None and job.active:
        MANAGER.cancel(job)


def _cancel(key: str) -> None:
    job = current(key)
    if job is not None:
        MANAGER.cancel(job)


def _render_active(key: str, job: Job, show_loss: bool) -> None:
    if job.state == QUEUED:
        position = MANAGER.queue_position(job)
        st.info(f"⏳ {job.label} is queued (position {position}): the server runs a limited number of jobs at "
                "once so that everyone gets a fair share. It starts automatically.")
    else:
        st.progress(min(max(job.fraction, 0.0), 1.0), text=f"{job.label}: {job.message or 'starting…'}")
        if show_loss and any(e.get("kind") in ("batch", "epoch") for e in job.events):
            st.plotly_chart(charts.loss_figure(job.events), key=f"loss-live::{key}")
    st.button("Cancel", key=f"cancel::{key}", on_click=_cancel, args=(key,), icon=":material/stop_circle:")


def _redraw_or_hand_over(key: str, show_loss: bool, keeps_panel: Callable[[Job], bool]) -> None:
    """Redraw the job's panel, or rerun the whole page once the job has left the state this panel shows."""
    job = current(key)
    if job is None:
        return
    if not keeps_panel(job):
        st.rerun()  # started, finished or cancelled: redraw the page (live panel or results)
    _render_active(key, job, show_loss)


@st.fragment(run_every=_REFRESH_S)
def _live(key: str, show_loss: bool) -> None:
    _redraw_or_hand_over(key, show_loss, lambda job: job.active)


@st.fragment(run_every=_QUEUED_REFRESH_S)
def _waiting(key: str, show_loss: bool) -> None:
    _redraw_or_hand_over(key, show_loss, lambda job: job.state == QUEUED)


def panel(key: str, *, show_loss: bool = True) -> Job | None:
    """Render the job under ``key``: live while queued or running, then its outcome.

    Returns the job (or None) so the page can show results when ``job.state == 'done'``.
    """
    job = current(key)
    if job is None:
        return None
    if job.state == QUEUED:
        _waiting(key, show_loss)
        return job
    if job.active:
        _live(key, show_loss)
        return job
    if job.state == DONE:
        seconds = f" in {job.seconds:.1f} s" if job.seconds is not None else ""
        st.success(f"{job.label} finished{seconds}. {job.message}")
        if show_loss and any(e.get("kind") == "epoch" for e in job.events):
            with st.expander("Training loss", expanded=False):
                st.plotly_chart(charts.loss_figure(job.events), key=f"loss-final::{key}")
    elif job.state == CANCELLED:
        st.warning(f"{job.label} was cancelled. Nothing from it was kept; start it again when you are ready.")
    elif job.state == FAILED:
        st.error(f"{job.label} failed: {job.error}")
    return job


__all__ = ["start", "start_job", "outcome", "start_task", "panel", "current", "result", "forget", "DONE", "FAILED", "CANCELLED", "RUNNING", "QUEUED"]


class TrainingControls:
    """The training settings every workflow offers, bounded by the demo's limits."""

    def __init__(self, epochs: int, batch_size: int, learning_rate: float, seed: int):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed

    def optimizer(self):
        import keras

        return keras.optimizers.Adam(learning_rate=self.learning_rate)

    def params(self) -> dict:
        """The settings as a task's JSON parameters (a worker builds the same Adam optimizer from them)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "seed": self.seed}


def controls(key: str, *, epochs: int = 10, batch_size: int = 256, learning_rate: float = 1e-3) -> TrainingControls:
    """Epochs, batch size, learning rate and seed inputs (epochs capped by the server's limit)."""
    from ui.settings import SETTINGS

    cols = st.columns(4)
    n_epochs = cols[0].number_input("Epochs", 1, SETTINGS.max_epochs, min(epochs, SETTINGS.max_epochs), key=f"{key}:epochs",
                                    help=f"At most {SETTINGS.max_epochs} on this server.")
    batch = cols[1].select_slider("Batch size", [32, 64, 128, 256, 512, 1024, 2048], value=batch_size,
                                  key=f"{key}:batch")
    rate = cols[2].select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=learning_rate,
                                 key=f"{key}:lr", format_func=lambda v: f"{v:g}")
    seed = cols[3].number_input("Seed", 0, 2**31 - 1, 0, key=f"{key}:seed", help="Same seed, same model.")
    return TrainingControls(int(n_epochs), int(batch), float(rate), int(seed))
