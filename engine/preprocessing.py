"""Scalers stored with a detector, so raw columns can be fed to it directly."""

from __future__ import annotations

import numpy as np

from engine.base import check_is_fitted


class Standardizer:
    """Per-feature standardisation ``(x - mean_) / scale_``; constant features get scale 1.

    Examples
    --------
    >>> s = Standardizer().fit(np.array([[0., 1.], [2., 1.]]))
    >>> s.transform(np.array([[1., 1.]]))
    array([[0., 0.]], dtype=float32)
    """

    def __init__(self, axis: int | tuple[int, ...] = 0):
        self.axis = axis
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> "Standardizer":
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=self.axis)
        std = X.std(axis=self.axis)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, ("mean_", "scale_"))
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, ("mean_", "scale_"))
        return (np.asarray(X, dtype=np.float64) * self.scale_ + self.mean_).astype(np.float32)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}/mean": np.asarray(self.mean_), f"{prefix}/scale": np.asarray(self.scale_)}

    @classmethod
    def from_arrays(cls, prefix: str, arrays: dict[str, np.ndarray]) -> "Standardizer":
        scaler = cls()
        scaler.mean_ = np.asarray(arrays[f"{prefix}/mean"], dtype=np.float64)
        scaler.scale_ = np.asarray(arrays[f"{prefix}/scale"], dtype=np.float64)
        return scaler
