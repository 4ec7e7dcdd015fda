"""The data both explanation pages (and the adversarial page) prepare: a table split, scaled for a model.

One numbering: a row is always named by its position in the table (``table_row``), the number the Data page,
the exports and every label show; positions within the test split stay internal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import DataError


@dataclass
class Prepared:
    """The chosen table as a classifier sees it, split into training and test rows.

    ``X_*`` are in model units: ``table value = model value * scale + offset`` (standardised features, or
    pixels divided by their largest value).
    """

    table_name: str
    feature_names: list[str]
    class_names: list[str]
    image_shape: tuple[int, ...] | None
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_rows: np.ndarray  # table row of each test row
    offset: np.ndarray
    scale: np.ndarray
    split: str
    notes: list[str] = field(default_factory=list)

    @property
    def is_image(self) -> bool:
        return self.image_shape is not None

    @property
    def feature_range(self) -> tuple:
        """Where an explanation may go: the pixel range, or each feature's range over the training rows."""
        if self.is_image:
            return 0.0, 1.0
        return self.X_train.min(axis=0), self.X_train.max(axis=0)

    def to_table_units(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * self.scale + self.offset

    def text(self, values: np.ndarray, signed: bool = False) -> list[str]:
        """Values of every feature (in table units) as text, to about three significant digits of its spread.

        The spread, not the value, sets the digits: a feature with a standard deviation of 7,000 shows whole
        numbers (and float noise of the model's float32 units shows as 0), one of 0.4 shows three decimals.
        """
        decimals = np.clip(2 - np.floor(np.log10(self.scale)), 0, 8).astype(int)
        return [number_text(v, d, signed) for v, d in zip(np.asarray(values, dtype=np.float64), decimals)]

    def position(self, table_row: int) -> int:
        """Where the table row ``table_row`` is in the test split."""
        return position_in_test(self.test_rows, table_row)


def position_in_test(test_rows: np.ndarray, table_row: int) -> int:
    """The position of ``table_row`` among ``test_rows``; a DataError when it is not a test row.

    Examples
    --------
    >>> position_in_test(np.array([4, 9, 2]), 9)
    1
    """
    where = np.flatnonzero(np.asarray(test_rows) == int(table_row))
    if not len(where):
        raise DataError(f"table row {int(table_row)} is not one of the test rows; pick one of the rows offered.")
    return int(where[0])


def row_label(table_row: int) -> str:
    """How every label names a row: by its table row number.

    Examples
    --------
    >>> row_label(1234)
    'row 1,234'
    """
    return f"row {int(table_row):,}"


def number_text(value: float, decimals: int, signed: bool = False) -> str:
    """``value`` with thousands separators and at most ``decimals`` decimals, trailing zeros dropped.

    Examples
    --------
    >>> number_text(1234.500, 2), number_text(-0.0001, 2, signed=True)
    ('1,234.5', '0')
    """
    text = f"{value:{'+' if signed else ''},.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "+0") else text


def without_label(features: list[str], label: str) -> tuple[list[str], bool]:
    """The features without the label column, and whether it was among them."""
    kept = [c for c in features if c != label]
    return kept, len(kept) != len(features)


def check_feature_count(features: list[str], limit: int) -> None:
    if len(features) > limit:
        raise DataError(f"{len(features):,} feature columns are selected; at most {limit:,} are allowed. "
                        "Leave some out.")
