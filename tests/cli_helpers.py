"""Small detector archives and data files shared by the `lantern` command's tests (unit and Ray tiers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["a", "b", "c", "d"]


def tabular_frame(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """An id column, four numeric features and a text column; a few rows far from the rest."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, len(FEATURES)))
    X[::37] += 8.0
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", [f"r{i}" for i in range(n_rows)])
    frame["note"] = "x"
    return frame


def make_aegmm_archive(path: Path, *, named: bool = True) -> Path:
    from engine.od import OutlierAEGMM
    from engine.saving import save_detector

    X = tabular_frame(400, seed=1)[FEATURES].to_numpy(np.float32)
    det = OutlierAEGMM().fit(X, epochs=2, batch_size=64, verbose=False, seed=0)
    det.infer_threshold(X, threshold_perc=90)
    return save_detector(det, path, feature_names=FEATURES if named else None)


def make_seq2seq_archive(path: Path) -> Path:
    from engine.od import OutlierSeq2Seq
    from engine.saving import save_detector

    t = np.arange(400) * 0.2
    X = np.stack([np.sin(t), np.cos(t)], axis=1).astype(np.float32)
    det = OutlierSeq2Seq(n_features=2, seq_len=10, latent_dim=4).fit(X, epochs=1, batch_size=32, verbose=False,
                                                                     seed=0)
    det.infer_threshold(X, threshold_perc=90)
    return save_detector(det, path, feature_names=["s", "c"])


def make_distillation_archive(path: Path) -> Path:
    from engine.ad import ModelDistillation
    from engine.classifiers import build_classifier
    from engine.saving import save_detector

    X = tabular_frame(200, seed=2)[FEATURES].to_numpy(np.float32)
    teacher = build_classifier(4, 3, hidden=(8,), seed=0)
    det = ModelDistillation(model=teacher, distilled_model=build_classifier(4, 3, hidden=(4,), seed=1))
    det.fit(X, epochs=1, batch_size=64, verbose=False, seed=0)
    det.infer_threshold(X, threshold_perc=90)
    return save_detector(det, path, feature_names=FEATURES)


def run_lantern(*args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m engine ARGS` in a fresh interpreter, as a user runs the `lantern` command."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)


def read_any(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path, keep_default_na=True)
