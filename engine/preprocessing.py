"""Preprocessing stored with a detector, so raw columns can be fed to it directly: scalers and encoders."""

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


OTHER = "(other)"
MISSING = "(missing)"


class OneHotEncoder:
    """One-hot encoding of text (categorical) columns, with an "other" bucket and a cap per column.

    ``fit`` keeps, for each column, its ``max_categories`` most frequent values (ties broken by the value's text);
    every column also gets an ``"(other)"`` indicator, which is where values outside those categories go: values
    never seen in ``fit`` (and rare values beyond the cap). A missing value (NaN/None) is the category
    ``"(missing)"``. Every value is compared as text. The fitted state is plain JSON (:meth:`get_config`,
    :meth:`from_config`), so it travels in a detector's archive without pickle.

    Parameters
    ----------
    max_categories : int
        Most categories kept per column (the rest share the ``"(other)"`` column).

    Attributes
    ----------
    columns_ : list of str
        The encoded columns, in order.
    categories_ : dict of str to list of str
        The kept categories of each column, most frequent first.

    Examples
    --------
    >>> import pandas as pd
    >>> enc = OneHotEncoder(max_categories=2).fit(pd.DataFrame({'city': ['a', 'a', 'b', 'c']}))
    >>> enc.feature_names_out()
    ['city=a', 'city=b', 'city=(other)']
    >>> X, unseen = enc.transform(pd.DataFrame({'city': ['b', 'z']}))
    >>> X.tolist(), unseen.tolist()
    ([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [False, True])
    """

    def __init__(self, max_categories: int = 30):
        if int(max_categories) < 1:
            raise ValueError(f"max_categories must be at least 1, got {max_categories!r}.")
        self.max_categories = int(max_categories)
        self.columns_: list[str] | None = None
        self.categories_: dict[str, list[str]] | None = None

    @staticmethod
    def _as_text(values) -> np.ndarray:
        import pandas as pd

        series = pd.Series(values, dtype=object)
        return np.where(series.isna().to_numpy(), MISSING, series.astype(str).to_numpy()).astype(object)

    def fit(self, frame) -> "OneHotEncoder":
        """Learn each column's categories from ``frame`` (a DataFrame of the text columns; its training rows)."""
        self.columns_ = [str(c) for c in frame.columns]
        self.categories_ = {}
        for name, column in zip(self.columns_, frame.columns):
            values, counts = np.unique(self._as_text(frame[column].to_numpy()), return_counts=True)
            order = sorted(range(len(values)), key=lambda i: (-counts[i], str(values[i])))
            self.categories_[name] = [str(values[i]) for i in order[:self.max_categories]]
        return self

    def feature_names_out(self) -> list[str]:
        """The names of the encoded columns: ``'column=category'`` and ``'column=(other)'``."""
        check_is_fitted(self, ("columns_", "categories_"))
        return [f"{c}={v}" for c in self.columns_ for v in [*self.categories_[c], OTHER]]

    @property
    def n_features_out(self) -> int:
        check_is_fitted(self, ("columns_", "categories_"))
        return sum(len(self.categories_[c]) + 1 for c in self.columns_)

    def transform(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """The one-hot matrix of ``frame`` and, per row, whether a value fell outside the kept categories.

        Returns
        -------
        X : numpy.ndarray of float32, shape (n_rows, n_features_out)
        unseen : numpy.ndarray of bool, shape (n_rows,)
            True where at least one value went to an ``"(other)"`` column.
        """
        check_is_fitted(self, ("columns_", "categories_"))
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise KeyError(f"column(s) {missing[:5]} are not in the data.")
        n = len(frame)
        blocks, unseen = [], np.zeros(n, dtype=bool)
        for column in self.columns_:
            categories = self.categories_[column]
            index = {v: i for i, v in enumerate(categories)}
            codes = np.array([index.get(v, len(categories)) for v in self._as_text(frame[column].to_numpy())],
                             dtype=np.int64)
            block = np.zeros((n, len(categories) + 1), dtype=np.float32)
            block[np.arange(n), codes] = 1.0
            unseen |= codes == len(categories)
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.zeros((n, 0), np.float32), unseen

    def get_config(self) -> dict:
        """The fitted state as plain JSON values."""
        check_is_fitted(self, ("columns_", "categories_"))
        return {"max_categories": self.max_categories,
                "categories": [[c, list(self.categories_[c])] for c in self.columns_]}

    @classmethod
    def from_config(cls, config: dict) -> "OneHotEncoder":
        """An encoder from :meth:`get_config`'s output; raises ValueError when it is malformed."""
        try:
            encoder = cls(int(config["max_categories"]))
            pairs = [(str(c), [str(v) for v in values]) for c, values in config["categories"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a one-hot encoder's configuration ({exc}).") from exc
        names = [c for c, _ in pairs]
        if len(set(names)) != len(names) or any(len(v) > encoder.max_categories or len(set(v)) != len(v)
                                                for _, v in pairs):
            raise ValueError("not a one-hot encoder's configuration (duplicate columns or categories).")
        encoder.columns_ = names
        encoder.categories_ = dict(pairs)
        return encoder
