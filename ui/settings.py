"""Limits of the shared demo, in one place, overridable through environment variables.

Every bound a user can hit (rows, columns, epochs, iterations, upload size, job time) is here, so
the messages and the docs quote the same numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.ingest import IngestLimits


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    max_concurrent_jobs: int
    max_jobs_per_session: int
    max_queue: int
    job_time_budget_s: int
    max_epochs: int
    max_train_rows: int
    max_upload_mb: int
    max_rows: int
    max_columns: int
    max_iterations: int
    trusted_mode: bool
    memory_log_s: int = 0
    job_nice: int = 10
    memory_release_s: int = 10
    ray_address: str = ""  # where jobs run: '' (threads of the server), 'local' or a Ray cluster's address
    max_model_mb: int = 100

    @property
    def ingest_limits(self) -> IngestLimits:
        return IngestLimits(
            max_bytes=self.max_upload_mb * 1024 * 1024, max_rows=self.max_rows, max_columns=self.max_columns
        )


def load_settings() -> Settings:
    """Read the limits from ``LANTERN_*`` environment variables, with defaults fit for a 2-core host."""
    cores = os.cpu_count() or 2
    return Settings(
        max_concurrent_jobs=max(1, _int_env("LANTERN_MAX_CONCURRENT_JOBS", cores)),
        max_jobs_per_session=max(1, _int_env("LANTERN_MAX_JOBS_PER_SESSION", 2)),
        max_queue=max(1, _int_env("LANTERN_MAX_QUEUE", 32)),
        job_time_budget_s=max(5, _int_env("LANTERN_JOB_TIME_BUDGET_S", 300)),
        max_epochs=max(1, _int_env("LANTERN_MAX_EPOCHS", 200)),
        max_train_rows=max(100, _int_env("LANTERN_MAX_TRAIN_ROWS", 100_000)),
        max_upload_mb=max(1, _int_env("LANTERN_MAX_UPLOAD_MB", 50)),
        max_rows=max(10, _int_env("LANTERN_MAX_ROWS", 200_000)),
        max_columns=max(2, _int_env("LANTERN_MAX_COLUMNS", 1_000)),
        max_iterations=max(10, _int_env("LANTERN_MAX_ITERATIONS", 2_000)),
        trusted_mode=os.environ.get("LANTERN_TRUSTED", "0") == "1",
        memory_log_s=max(0, _int_env("LANTERN_MEMORY_LOG_S", 0)),
        job_nice=min(19, max(0, _int_env("LANTERN_JOB_NICE", 10))),
        memory_release_s=max(0, _int_env("LANTERN_MEMORY_RELEASE_S", 10)),
        ray_address=os.environ.get("LANTERN_RAY_ADDRESS", "").strip(),
        max_model_mb=max(1, _int_env("LANTERN_MAX_MODEL_MB", 100)),
    )


SETTINGS = load_settings()
