"""The live job panel: queued position, progress, live loss chart, Cancel, and the outcome.

Usage in a page::

    if st.button("Train"):
        training.start_job("aegmm", "Train AEGMM", jobs.tabular.fit_and_score, request, context=prepared)
    training.panel("aegmm")
    run = training.outcome("aegmm", workflows.tabular.build_run)  # the page's view, built in the page's thread

The job lives in ``st.session_state`` (one per key and session), so reruns, slider moves and
other pages do not disturb it. The last two finished jobs under a key are kept too: :func:`outcome` and
:func:`result` give the latest finished one, so pressing Train again (or cancelling) never hides the results on
screen until new ones arrive, and :func:`previous` gives the run before it, for a comparison (:func:`compare`).
The panel refreshes itself every half second while the job runs,
and every two seconds while it waits in the queue (its position changes slowly, and on a busy
server every waiting session reruns its panel).
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

import pandas as pd

from ui import charts, session
from jobs.runner import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobLimitError
from ui.runtime import MANAGER, manager, session_id

_REFRESH_S = 0.5  # a running job's progress and live loss chart
_QUEUED_REFRESH_S = 2.0  # a queued job's position: every waiting session reruns this, so it is kept light


def _state_key(key: str) -> str:
    return f"job::{key}"


def _kept_key(key: str) -> str:
    return f"jobdone::{key}"


session.persist("job::", "jobdone::")  # a reload within the session TTL brings the finished jobs back
_KEPT_RUNS = 2  # the latest finished job under a key and the one before it (for a comparison)


def current(key: str) -> Job | None:
    """The job last started under ``key`` in this session, if any."""
    job = st.session_state.get(_state_key(key))
    _remember(key, job)
    return job


def _remember(key: str, job: Job | None) -> None:
    """Keep a finished job among the last finished ones under ``key`` (once)."""
    if job is None or job.state != DONE:
        return
    kept: list = st.session_state.setdefault(_kept_key(key), [])
    if any(done is job for done in kept):
        return
    kept.append(job)
    del kept[:-_KEPT_RUNS]


def _finished(key: str) -> list[Job]:
    current(key)
    return st.session_state.get(_kept_key(key), [])


def latest(key: str) -> Job | None:
    """The last job under ``key`` that finished with an answer (a newer one may be running, or was cancelled)."""
    kept = _finished(key)
    return kept[-1] if kept else None


def previous_job(key: str) -> Job | None:
    """The finished job before :func:`latest` under ``key``, if any."""
    kept = _finished(key)
    return kept[-2] if len(kept) >= 2 else None


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


def _view(job: Job | None, build: Callable[[Any, Any], Any]) -> Any:
    if job is None:
        return None
    if job.view is None:
        job.view = build(job.result, job.context)
    return job.view


def outcome(key: str, build: Callable[[Any, Any], Any]) -> Any:
    """The page's view of the latest finished job under ``key``: ``build(answer, context)``, built once, else None.

    ``build`` runs in the page's script thread the first time the answer is shown (never in the job's thread)
    and its value is kept with the job, so slider moves and reruns reuse it. While a newer job under ``key``
    runs (or after it was cancelled or failed) this is still the last finished one: results stay on screen
    until new ones arrive.
    """
    return _view(latest(key), build)


def previous(key: str, build: Callable[[Any, Any], Any]) -> Any:
    """The page's view of the finished job before the latest one under ``key`` (see :func:`outcome`), else None."""
    return _view(previous_job(key), build)


def result(key: str) -> Any:
    """The result of the latest finished job under ``key`` (kept while a newer one runs), else None."""
    job = latest(key)
    return job.result if job is not None else None


def forget(key: str) -> None:
    """Drop the job under ``key`` and its kept results (cancelling it if it still runs)."""
    job = st.session_state.pop(_state_key(key), None)
    st.session_state.pop(_kept_key(key), None)
    if job is not None and job.active:
        MANAGER.cancel(job)


def _cancel(key: str) -> None:
    job = current(key)
    if job is not None:
        MANAGER.cancel(job)


def _stop_and_keep(key: str) -> None:
    """Ask the running training to stop after its current batch; the job then finishes with the model so far."""
    job = current(key)
    if job is not None and job.active:
        job.cancel.stop()


def _trains(job: Job) -> bool:
    """Whether the job is training a model (so that stopping early still leaves one to keep)."""
    return job.kind == "train" and any(e.get("kind") in ("batch", "epoch") for e in job.events)


def _render_active(key: str, job: Job, show_loss: bool) -> None:
    if job.state == QUEUED:
        position = MANAGER.queue_position(job)
        st.info(f"⏳ {job.label} is queued (position {position}): the server runs a limited number of jobs at "
                "once so that everyone gets a fair share. It starts automatically.")
    else:
        st.progress(min(max(job.fraction, 0.0), 1.0), text=f"{job.label}: {job.message or 'starting…'}")
        if show_loss and any(e.get("kind") in ("batch", "epoch") for e in job.events):
            st.plotly_chart(charts.loss_figure(job.events), key=f"loss-live::{key}")
    stopping = job.cancel.stop_requested
    if stopping:
        st.caption("Stopping after the current batch: the model learned so far is then scored and kept.")
    st.button("Cancel", key=f"cancel::{key}", on_click=_cancel, args=(key,), icon=":material/stop_circle:",
              help="Stop and discard this run.")
    if job.state == RUNNING and _trains(job):
        st.button("Stop and keep", key=f"stopkeep::{key}", on_click=_stop_and_keep, args=(key,),
                  icon=":material/pause_circle:", disabled=stopping,
                  help="Stop training now and keep what the model learned so far (it is scored as usual).")
    if latest(key) is not None:
        st.caption("The results below are from your last finished run; they stay until this run finishes.")


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


def panel(key: str, *, show_loss: bool = True, compare: bool = True) -> Job | None:
    """Render the job under ``key``: live while queued or running, then its outcome.

    While a new job runs, the results of the last finished one stay on the page (:func:`outcome`). With
    ``compare`` a finished run that has a predecessor offers a comparison of their training figures (pages that
    compare their own figures call :func:`compare` and pass ``compare=False``). Returns the job (or None).
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
        if job.cancel.stop_requested:
            epochs = _training_figures(job).get("epochs")
            learned = f" after {epochs} epoch(s)" if epochs else ""
            st.warning(f"{job.label} was stopped at your request{learned}{seconds}: the results below come from "
                       "the model as trained so far, which may be undertrained. Train again for a full run.",
                       icon=":material/pause_circle:")
        else:
            st.success(f"{job.label} finished{seconds}. {job.message}")
        if show_loss and any(e.get("kind") == "epoch" for e in job.events):
            with st.expander("Training loss", expanded=False):
                st.plotly_chart(charts.loss_figure(job.events), key=f"loss-final::{key}")
        if compare and previous_job(key) is not None:
            with st.expander("Compare with the previous run", expanded=False):
                st.dataframe(_comparison(key), key=f"compare-runs::{key}")
    elif job.state == CANCELLED:
        kept = " Your previous results are still shown below." if latest(key) is not None else ""
        st.warning(f"{job.label} was cancelled. Nothing from it was kept; start it again when you are ready.{kept}")
    elif job.state == FAILED:
        kept = " Your previous results are still shown below." if latest(key) is not None else ""
        st.error(f"{job.label} failed: {job.error}{kept}")
    return job


def _training_figures(job: Job) -> dict:
    """What every run says about itself: epochs trained, final loss, time taken, how it ended."""
    epochs = [e for e in job.events if e.get("kind") == "epoch"]
    figures: dict[str, Any] = {}
    if epochs:
        figures["epochs"] = int(epochs[-1].get("epoch", len(epochs)))
        figures["final loss"] = float(epochs[-1]["loss"])
    if job.seconds is not None:
        figures["seconds"] = round(job.seconds, 1)
    figures["ended"] = "stopped early (kept)" if job.cancel.stop_requested else "completed"
    return figures


def _comparison(key: str, figures: Callable[[Any], dict] | None = None,
                build: Callable[[Any, Any], Any] | None = None) -> pd.DataFrame:
    """One row per run (latest first): the page's ``figures(view)`` then the training figures."""
    rows, names = [], []
    for name, job in (("this run", latest(key)), ("previous run", previous_job(key))):
        if job is None:
            continue
        row = {}
        if figures is not None:
            view = _view(job, build) if build is not None else (job.view if job.view is not None else job.result)
            row.update(figures(view))
        row.update(_training_figures(job))
        rows.append(row)
        names.append(name)
    return pd.DataFrame(rows, index=names)


def compare(key: str, build: Callable[[Any, Any], Any] | None, figures: Callable[[Any], dict], *,
            expanded: bool = False) -> None:
    """An expander comparing the latest run under ``key`` with the one before: ``figures(view)`` of each, next to
    the training figures (epochs, final loss, time). Nothing when there is no earlier run.

    ``build`` is the page's :func:`outcome` builder (None for a page whose job result is already its view).

    Pages that call it pass ``compare=False`` to :func:`panel` (which otherwise shows the training figures only).
    ``figures`` returns a small dict of plain values, e.g. ``{"flagged": 31, "threshold": 0.42, "F1": 0.8}``.
    """
    if previous_job(key) is None or latest(key) is None:
        return
    with st.expander("Compare with the previous run", expanded=expanded):
        st.dataframe(_comparison(key, figures, build), key=f"compare-figures::{key}")


__all__ = ["start_job", "outcome", "previous", "compare", "latest", "previous_job", "panel",
           "current", "result", "forget", "DONE", "FAILED", "CANCELLED", "RUNNING", "QUEUED"]


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
                                    help="Passes over the training rows: more fit the data better and take longer. "
                                         f"At most {SETTINGS.max_epochs} on this server.")
    batch = cols[1].select_slider("Batch size", [32, 64, 128, 256, 512, 1024, 2048], value=batch_size,
                                  key=f"{key}:batch", help="Rows per training step. Smaller batches take more, noisier "
                                                           "steps per epoch; larger ones make an epoch faster.")
    rate = cols[2].select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=learning_rate,
                                 key=f"{key}:lr", format_func=lambda v: f"{v:g}",
                                 help="How far each training step moves the model. Too high and the loss jumps or "
                                      "diverges; too low and it falls slowly. 0.001 is a safe start.")
    seed = cols[3].number_input("Seed", 0, 2**31 - 1, 0, key=f"{key}:seed", help="Same seed, same model.")
    return TrainingControls(int(n_epochs), int(batch), float(rate), int(seed))
