"""Lantern's engine: outlier, adversarial and explanation algorithms with the alibi / alibi-detect API.

The engine is a plain library: it never imports streamlit. Submodules:

- :mod:`engine.od` — outlier detectors (``OutlierAEGMM``, ``OutlierSeq2Seq``)
- :mod:`engine.ad` — adversarial detection (``ModelDistillation``) and attacks
- :mod:`engine.explainers` — ``CEM`` and ``AnchorTabular``
- :mod:`engine.training`, :mod:`engine.saving`, :mod:`engine.ingest` — the shared machinery
"""

import os as _os

# Keras 3 must run on TensorFlow here; set before keras is first imported anywhere.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from engine.errors import (  # noqa: E402
    ArchiveError,
    DataError,
    LanternError,
    NotFittedError,
    PredictorCallError,
    PredictorReturnTypeError,
    TrainingCancelled,
    TrainingDivergedError,
)
from engine.version import __version__  # noqa: E402

__all__ = [
    "ArchiveError",
    "DataError",
    "LanternError",
    "NotFittedError",
    "PredictorCallError",
    "PredictorReturnTypeError",
    "TrainingCancelled",
    "TrainingDivergedError",
    "__version__",
]
