"""The set-up every bench script shares: TensorFlow quiet and on the CPU, the repository importable.

Import it first, before numpy or TensorFlow (a script run as ``python bench/<name>.py`` has ``bench/`` on
``sys.path``)::

    from _common import ROOT, results_path  # noqa: E402

The environment variables are defaults only: a caller's own setting wins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

#: The repository's root folder.
ROOT = Path(__file__).resolve().parent.parent

for _folder in (ROOT, ROOT / "bench"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


def results_path(name: str) -> Path:
    """Where a bench writes its figures: ``bench/results/<name>.json``."""
    return ROOT / "bench" / "results" / f"{name}.json"
