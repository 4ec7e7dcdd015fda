"""Errors raised by the engine.

Every error says what went wrong and how to fix it, so the app can show the message as it is.
They subclass the closest built-in exception, so ``except ValueError`` style code keeps working.
"""

from __future__ import annotations


class LanternError(Exception):
    """Base class of every error the engine raises on purpose."""


class DataError(LanternError, ValueError):
    """The data given is unusable: empty, malformed, non-numeric, NaN/inf, too large, or the wrong shape."""


class NotFittedError(LanternError, RuntimeError):
    """A method needs state that ``fit`` (or ``infer_threshold``) creates, and it is not there yet."""


class PredictorCallError(LanternError, RuntimeError):
    """Calling the user's predictor failed."""


class PredictorReturnTypeError(LanternError, TypeError):
    """The user's predictor returned something other than an array of the expected shape."""


class ArchiveError(LanternError, ValueError):
    """A saved detector or explainer archive is foreign, corrupt, tampered with or of an unsupported version."""


class TrainingDivergedError(LanternError, RuntimeError):
    """Training produced NaN or inf losses; lower the learning rate or standardise the data."""


class TrainingCancelled(LanternError):
    """Training was cancelled through its cancel token; nothing half-trained is kept."""


class ModelError(LanternError, ValueError):
    """A model file cannot be used as a predictor: unreadable, unsafe, too large, not a classifier giving class
    probabilities, or not fitting the chosen columns. The message says which, and how to export it so it fits."""
