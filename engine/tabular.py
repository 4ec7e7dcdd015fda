"""Tables for classifier explanations: ordinal-coded features, class labels, a train/test split, a forest.

Explainers of tabular classifiers (:class:`~engine.explainers.AnchorTabular`, CEM on tables) want
a float matrix in which every categorical column is a code ``0..k-1`` and the names of those
codes kept aside (``categorical_names``). This module turns a ``pandas.DataFrame`` into that:

- :class:`OrdinalEncoder`: numbers pass through (NaN kept as "missing"), categories become codes
  with their names, a missing category becomes its own ``"(missing)"`` category;
- :func:`classification_data`: features, labels and a train/test split (a ``split`` column with
  ``train`` / ``test`` values, or a seeded stratified random split) in one call;
- :func:`train_forest`: a scikit-learn random forest grown a few trees at a time, so that it
  reports progress, can be cancelled and stops at a time budget.

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({'age': [25, 40, 31, 58], 'job': ['a', 'b', 'a', None], 'y': [0, 1, 0, 1]})
>>> data = classification_data(frame, ['age', 'job'], 'y', test_size=0.5, seed=0)
>>> data.feature_names, data.categorical_names
(['age', 'job'], {1: ['a', 'b', '(missing)']})
>>> data.X_train.shape, data.class_names
((2, 2), ['0', '1'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.errors import DataError

__all__ = [
    "ClassificationData",
    "MAX_CATEGORIES",
    "MAX_CLASSES",
    "MISSING_CATEGORY",
    "OrdinalEncoder",
    "classification_data",
    "find_split_column",
    "train_forest",
]

#: Most distinct values a categorical feature may have.
MAX_CATEGORIES = 100
#: Most classes a label column may have.
MAX_CLASSES = 50
#: Name of the category given to missing values of a categorical feature.
MISSING_CATEGORY = "(missing)"


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _category_text(values: pd.Series) -> pd.Series:
    """Category values as text: whole numbers without '.0', missing values as MISSING_CATEGORY."""
    missing = values.isna().to_numpy()
    if _is_numeric(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        text = pd.Series(numbers, index=values.index).astype(str).astype(object)
        text[whole] = numbers[whole].astype(np.int64).astype(str)
    else:
        text = values.astype(str).astype(object)
    text[missing] = MISSING_CATEGORY
    return text


class OrdinalEncoder:
    """Numerical columns as floats and categorical columns as codes ``0..k-1`` with their names.

    Parameters
    ----------
    categorical : sequence of str
        Columns to treat as categories even when they hold numbers. Columns holding text or
        booleans are categorical anyway.

    Attributes
    ----------
    feature_names_ : list of str
        The encoded columns, in order.
    categories_ : dict
        ``{column: [category names]}``; a category's code is its position in the list.

    Examples
    --------
    >>> frame = pd.DataFrame({'size': [1.5, 2.0], 'colour': ['red', 'blue']})
    >>> encoder = OrdinalEncoder().fit(frame, ['size', 'colour'])
    >>> encoder.categorical_names
    {1: ['blue', 'red']}
    >>> encoder.transform(frame).tolist()
    [[1.5, 1.0], [2.0, 0.0]]
    """

    def __init__(self, categorical: Sequence[str] = ()):
        self.categorical = tuple(categorical)

    def fit(self, frame: pd.DataFrame, columns: Sequence[str]) -> "OrdinalEncoder":
        """Learn which columns are categorical and their categories (sorted by name)."""
        columns = list(columns)
        if not columns:
            raise DataError("no feature columns are selected; pick at least one column.")
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise DataError(f"column(s) {unknown[:5]} are not in the data.")
        if len(set(columns)) != len(columns):
            raise DataError("a feature column is selected twice; pick each column once.")
        categories = {}
        for column in columns:
            series = frame[column]
            if series.isna().all():
                raise DataError(f"column {column!r} has no values at all; leave it out.")
            if column in self.categorical or not _is_numeric(series):
                names = sorted(_category_text(series).unique(), key=lambda n: (n == MISSING_CATEGORY, n))
                if len(names) > MAX_CATEGORIES:
                    raise DataError(
                        f"column {column!r} has {len(names):,} distinct values, too many for a categorical feature "
                        f"(at most {MAX_CATEGORIES}); leave it out, or make it numeric if it holds numbers."
                    )
                categories[column] = names
            elif np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan)).any():
                raise DataError(
                    f"column {column!r} holds infinite values; clean the file or leave the column out."
                )
        self.feature_names_ = columns
        self.categories_ = categories
        return self

    @property
    def categorical_names(self) -> dict[int, list[str]]:
        """``{feature index: category names}``, as :class:`~engine.explainers.AnchorTabular` takes it."""
        return {j: list(self.categories_[c]) for j, c in enumerate(self.feature_names_) if c in self.categories_}

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The float64 matrix of the encoded columns; NaN for missing numbers and unseen categories."""
        if not hasattr(self, "feature_names_"):
            raise DataError("the encoder is not fitted: call fit(frame, columns) first.")
        out = np.empty((len(frame), len(self.feature_names_)), dtype=np.float64)
        for j, column in enumerate(self.feature_names_):
            if column not in frame.columns:
                raise DataError(f"column {column!r} is missing from the data.")
            series = frame[column]
            if column in self.categories_:
                codes = pd.Categorical(_category_text(series), categories=self.categories_[column]).codes
                out[:, j] = np.where(codes < 0, np.nan, codes)  # -1: a category not seen in fit
            else:
                out[:, j] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return out


@dataclass
class ClassificationData:
    """Encoded features and labels of a table, split into training and test rows.

    ``train_rows`` / ``test_rows`` are positions in the frame the data came from; ``notes``
    says what was dropped or sampled on the way.
    """

    feature_names: list[str]
    categorical_names: dict[int, list[str]]
    class_names: list[str]
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    split: str
    encoder: OrdinalEncoder
    notes: list[str] = field(default_factory=list)


def find_split_column(frame: pd.DataFrame) -> str | None:
    """The first column named ``split`` (any case) whose values are all ``train`` or ``test``, if any.

    Examples
    --------
    >>> find_split_column(pd.DataFrame({'x': [1, 2], 'Split': ['train', 'test']}))
    'Split'
    """
    for column in frame.columns:
        if str(column).strip().lower() != "split":
            continue
        values = frame[column].dropna().astype(str).str.strip().str.lower()
        if len(values) and values.isin(["train", "test"]).all() and values.nunique() == 2:
            return column
    return None


def _split_from_column(values: pd.Series, column: str) -> np.ndarray:
    """Boolean 'is a test row' from a column of 'train' / 'test' values."""
    text = values.astype(str).str.strip().str.lower()
    bad = sorted(set(text[~text.isin(["train", "test"])]))
    if bad:
        raise DataError(
            f"the split column {column!r} must hold only 'train' and 'test', but it also holds {bad[:5]}; "
            "choose a random split instead."
        )
    return (text == "test").to_numpy()


def _random_split(labels: np.ndarray, test_size: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean 'is a test row': stratified by class, every class with two rows or more on both sides."""
    is_test = np.zeros(len(labels), dtype=bool)
    for code in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == code))
        if len(members) >= 2:
            n_test = min(len(members) - 1, max(1, int(round(test_size * len(members)))))
            is_test[members[:n_test]] = True
    return is_test


def classification_data(
    frame: pd.DataFrame,
    features: Sequence[str],
    label: str,
    *,
    categorical: Sequence[str] = (),
    split_column: str | None = None,
    test_size: float = 0.25,
    seed: int = 0,
    max_train_rows: int | None = None,
) -> ClassificationData:
    """Encode ``features`` and ``label`` of ``frame`` and split the rows into training and test sets.

    Parameters
    ----------
    frame : pandas.DataFrame
    features : sequence of str
        Feature columns; text and boolean columns (and those named in ``categorical``) are
        ordinal-coded with their category names kept.
    label : str
        Column of class labels (2 to :data:`MAX_CLASSES` classes). Rows without a label are dropped.
    categorical : sequence of str
        Numeric columns to treat as categories.
    split_column : str, optional
        A column of ``train`` / ``test`` values giving the split; otherwise a random split
        stratified by class, of ``test_size`` of the rows, drawn with ``seed``.
    test_size : float
        Share of rows in the test set of a random split, in (0, 1).
    seed : int
        Seed of the random split and of the training-row sample.
    max_train_rows : int, optional
        Keep a random sample of at most this many training rows.

    Returns
    -------
    ClassificationData

    Raises
    ------
    DataError
        With a message saying what to change: no or unknown columns, the label among the features,
        too many categories or classes, a malformed split column, too few rows.
    """
    features = list(features)
    if label not in frame.columns:
        raise DataError(f"the label column {label!r} is not in the data.")
    if label in features:
        raise DataError(f"the label column {label!r} is also selected as a feature; remove it from the features.")
    if split_column is not None and split_column in features:
        raise DataError(f"the split column {split_column!r} is selected as a feature; remove it from the features.")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size}.")
    notes = []
    has_label = frame[label].notna().to_numpy()
    if not has_label.all():
        notes.append(f"{int((~has_label).sum()):,} row(s) without a value in {label!r} were left out.")
    rows = np.flatnonzero(has_label)
    if len(rows) < 4:
        raise DataError(f"only {len(rows)} row(s) have a label; at least 4 are needed for training and testing.")

    label_text = _category_text(frame[label].iloc[rows])
    class_names = sorted(label_text.unique())
    if len(class_names) < 2:
        raise DataError(f"the label column {label!r} has a single class ({class_names[0]!r}); a classifier "
                        "needs at least two.")
    if len(class_names) > MAX_CLASSES:
        raise DataError(
            f"the label column {label!r} has {len(class_names):,} distinct values; choose a column of class labels "
            f"(at most {MAX_CLASSES} classes)."
        )
    y = pd.Categorical(label_text, categories=class_names).codes.astype(np.int64)

    encoder = OrdinalEncoder(categorical).fit(frame, features)
    rng = np.random.default_rng(seed)
    if split_column is not None:
        if split_column not in frame.columns:
            raise DataError(f"the split column {split_column!r} is not in the data.")
        is_test = _split_from_column(frame[split_column].iloc[rows], split_column)
        split = f"the {split_column!r} column"
    else:
        is_test = _random_split(y, test_size, rng)
        split = f"a random {test_size:.0%} test split (seed {seed})"
    train, test = rows[~is_test], rows[is_test]
    y_train, y_test = y[~is_test], y[is_test]
    if len(train) < 2 or len(test) < 1:
        raise DataError(f"the split leaves {len(train)} training and {len(test)} test row(s); both need rows.")
    if max_train_rows is not None and len(train) > max_train_rows:
        keep = np.sort(rng.choice(len(train), size=int(max_train_rows), replace=False))
        notes.append(f"trained on a random sample of {int(max_train_rows):,} of {len(train):,} training rows.")
        train, y_train = train[keep], y_train[keep]
    if len(np.unique(y_train)) < 2:
        raise DataError("the training rows hold a single class; use more rows or another split.")

    selected = frame.iloc[np.concatenate([train, test])]
    X = encoder.transform(selected)
    return ClassificationData(
        feature_names=features,
        categorical_names=encoder.categorical_names,
        class_names=class_names,
        X_train=X[: len(train)],
        y_train=y_train,
        X_test=X[len(train):],
        y_test=y_test,
        train_rows=train,
        test_rows=test,
        split=split,
        encoder=encoder,
        notes=notes,
    )


def train_forest(
    X: np.ndarray,
    y: np.ndarray,
    *,
    n_trees: int = 50,
    max_depth: int | None = 12,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    cancel=None,
    time_budget: float | None = None,
):
    """A scikit-learn random forest grown ten trees at a time, with progress, cancel and a time budget.

    Missing values (NaN) are allowed: scikit-learn's trees route them. One core is used (the app runs
    many jobs at once).

    Parameters
    ----------
    X : numpy.ndarray of shape (n_rows, n_features)
    y : numpy.ndarray of int, shape (n_rows,)
    n_trees : int
        Trees in the forest.
    max_depth : int, optional
        Depth limit of each tree (keeps the model small); None for no limit.
    seed : int
        Random state: the same seed and data give the same forest.
    progress : callable, optional
        Called after each group of trees with ``{'kind': 'trees', 'trees_built', 'n_trees', 'fraction'}``.
    cancel : engine.training.CancelToken, optional
        Checked between groups of trees (raises ``TrainingCancelled``).
    time_budget : float, optional
        Seconds after which no more trees are grown; the forest built so far is returned.

    Returns
    -------
    sklearn.ensemble.RandomForestClassifier

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> forest = train_forest(X, (X[:, 0] > 0).astype(int), n_trees=20, seed=0)
    >>> len(forest.estimators_), float((forest.predict(X) == (X[:, 0] > 0)).mean()) > 0.95
    (20, True)
    """
    from sklearn.ensemble import RandomForestClassifier

    if isinstance(n_trees, bool) or not isinstance(n_trees, (int, np.integer)) or n_trees < 1:
        raise ValueError(f"n_trees must be an integer >= 1, got {n_trees!r}.")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(X) < 2:
        raise DataError(f"X must be a 2-D array with one row per label; got X {X.shape} and y {y.shape}.")
    if np.isinf(X).any():
        raise DataError("X holds infinite values; replace them or drop those rows.")
    forest = RandomForestClassifier(n_estimators=0, max_depth=max_depth, random_state=seed, n_jobs=1,
                                    warm_start=True)
    started = time.monotonic()
    step = max(1, min(10, n_trees // 5))
    built = 0
    while built < n_trees:
        if cancel is not None:
            cancel.raise_if_cancelled()
        built = min(n_trees, built + step)
        forest.set_params(n_estimators=built)
        forest.fit(X, y)
        if progress is not None:
            progress({"kind": "trees", "trees_built": built, "n_trees": n_trees, "fraction": built / n_trees})
        if time_budget is not None and time.monotonic() - started > time_budget:
            break
    return forest
