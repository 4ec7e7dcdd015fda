"""Test-wide settings: quiet, CPU-only TensorFlow on the Keras TF backend."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# The repository root, so `engine`, `ui` and `tests` import the same way in pytest, in AppTest's script
# runs (which execute pages/*.py as scripts) and in the e2e server's subprocess.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
