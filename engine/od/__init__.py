"""Outlier detectors."""

from engine.od.aegmm import OutlierAEGMM  # noqa: E402,F401
from engine.od.seq2seq import OutlierSeq2Seq  # noqa: E402,F401
