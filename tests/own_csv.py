"""The own CSV an analyst brings (issue #20): 300 rows, 5 numeric columns, one text column, a few missing values,
a 0/1 label. Shared by the Tabular outliers page tests and the own-CSV walkthrough e2e test."""

from __future__ import annotations

import numpy as np
import pandas as pd

CITIES = ("Paris", "Lyon", "Nice", "Lille")
MISSING_ROWS = (7, 42, 133, 250)  # a missing value in x2: skipped under the 'drop' policy
OUTLIER_ROWS = tuple(range(0, 300, 25))  # 12 rows shifted far from the rest, labelled 1
NUMERIC = ["x1", "x2", "x3", "x4", "x5"]


def own_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 5)).round(4), columns=NUMERIC)
    frame["city"] = rng.choice(CITIES, size=n)
    frame["label"] = 0
    outliers = [r for r in OUTLIER_ROWS if r < n]
    frame.loc[outliers, NUMERIC] += 6.0
    frame.loc[outliers, "label"] = 1
    frame.loc[[r for r in MISSING_ROWS if r < n], "x2"] = np.nan
    return frame


def own_csv_bytes(n: int = 300, seed: int = 0) -> bytes:
    return own_frame(n, seed).to_csv(index=False).encode("utf-8")
