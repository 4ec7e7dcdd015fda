"""Lantern's jobs: the heavy part of each workflow as a plain function with a typed request and a typed answer.

A job function is ``fn(request, progress) -> answer``:

- ``request`` and ``answer`` are dataclasses of plain values and numpy arrays (a trained detector travels as
  its archive bytes, an uploaded model as its file bytes), so a job runs the same in a thread of the server or
  in another process or machine;
- ``progress`` is a :class:`Progress`: the engine's ``progress`` callback (``report``), a stage line
  (``set_stage``), the engine's cancel token (``cancel``) and the server's time budget (``time_budget``).

Functions are passed to the runner by reference (``training.start_job(key, label, jobs.tabular.fit_and_score,
request)``), never looked up by a string, so go-to-definition follows a click from a page to the engine.
This package never imports streamlit.
"""

from jobs.base import JobFn, Progress

__all__ = ["JobFn", "Progress"]
