"""Reading uploaded CSV bytes into a checked table with column roles.

Everything a stranger can upload goes through :func:`read_csv_bytes`. Size, row and column
limits are checked on the raw bytes before the full parse, the encoding is UTF-8 with a Latin-1
fallback, the delimiter is sniffed, and every failure is a :class:`~engine.errors.DataError`
whose message says what is wrong and how to fix it.

Column roles: ``'feature'`` (numeric input), ``'categorical'`` (text or few-valued input),
``'label'`` (ground truth), ``'time'`` (time or index axis, never fed to a model) and
``'ignore'``. They are inferred and can be overridden with :meth:`Table.with_roles`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from engine.errors import DataError

ROLES = ("feature", "categorical", "label", "time", "ignore")
_LABEL_NAMES = {"label", "labels", "class", "target", "y", "anomaly", "outlier", "is_anomaly", "is_outlier",
                "species", "income", "outcome", "ground_truth"}
_TIME_NAMES = {"time", "timestamp", "date", "datetime", "t", "index", "step", "time_index", "ds"}
_DELIMITERS = ",;\t|"
_MAX_CATEGORIES = 50


@dataclass(frozen=True)
class IngestLimits:
    """Bounds on an upload; each is checked before the CSV is fully parsed."""

    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 200_000
    max_columns: int = 1_000
    max_cells: int = 20_000_000


DEFAULT_LIMITS = IngestLimits()


@dataclass
class Table:
    """A parsed dataset with column roles and what was noticed while reading it.

    Attributes
    ----------
    frame : pandas.DataFrame
        The data, numeric columns as floats or ints.
    roles : dict
        Column name → role (one of :data:`ROLES`).
    name : str
        Display name (the uploaded file's name or the bundled dataset's title).
    encoding, delimiter : str
        How the bytes were read.
    warnings : list of str
        Things the user should know (renamed duplicate columns, coerced values, …).
    """

    frame: pd.DataFrame
    roles: dict[str, str]
    name: str = "data"
    encoding: str = "utf-8"
    delimiter: str = ","
    warnings: list[str] = field(default_factory=list)

    def columns_with_role(self, role: str) -> list[str]:
        """Columns whose role is ``role``, in frame order."""
        return [c for c in self.frame.columns if self.roles.get(c) == role]

    @property
    def label(self) -> str | None:
        labels = self.columns_with_role("label")
        return labels[0] if labels else None

    @property
    def time(self) -> str | None:
        times = self.columns_with_role("time")
        return times[0] if times else None

    def with_roles(self, overrides: dict[str, str]) -> "Table":
        """A copy with some roles changed; checks names, roles and what each role needs."""
        roles = dict(self.roles)
        for column, role in overrides.items():
            if column not in roles:
                raise DataError(f"there is no column {column!r}; columns are {list(self.frame.columns)[:20]}.")
            if role not in ROLES:
                raise DataError(f"role {role!r} for {column!r} is not one of {', '.join(ROLES)}.")
            if role == "feature" and not pd.api.types.is_numeric_dtype(self.frame[column]):
                raise DataError(
                    f"column {column!r} holds text, so it cannot be a numeric feature; make it 'categorical' "
                    "or 'ignore'."
                )
            roles[column] = role
        for role in ("label", "time"):
            chosen = [c for c, r in roles.items() if r == role]
            if len(chosen) > 1:
                raise DataError(f"only one column can be the {role}; {', '.join(map(repr, chosen))} all are.")
        return replace(self, roles=roles, warnings=list(self.warnings))

    def summary(self) -> pd.DataFrame:
        """One row per column: role, dtype, missing, infinite, unique values, constant flag, range."""
        rows = []
        for column in self.frame.columns:
            series = self.frame[column]
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            values = series.to_numpy(dtype=np.float64, na_value=np.nan) if numeric else None
            n_inf = int(np.isinf(values).sum()) if numeric else 0
            finite = values[np.isfinite(values)] if numeric else None
            rows.append({
                "column": column,
                "role": self.roles.get(column, "ignore"),
                "dtype": str(series.dtype),
                "missing": int(series.isna().sum()),
                "infinite": n_inf,
                "unique": int(series.nunique(dropna=True)),
                "constant": bool(series.nunique(dropna=True) <= 1),
                "min": float(finite.min()) if numeric and finite.size else None,
                "max": float(finite.max()) if numeric and finite.size else None,
            })
        return pd.DataFrame(rows)

    def missing_report(self) -> pd.DataFrame:
        """Columns with missing or infinite values and how many rows they affect."""
        summary = self.summary()
        report = summary.loc[(summary["missing"] > 0) | (summary["infinite"] > 0), ["column", "role", "missing", "infinite"]]
        return report.assign(share=(report["missing"] + report["infinite"]) / max(len(self.frame), 1)).reset_index(drop=True)


def _decode(data: bytes) -> tuple[str, str]:
    head = data[:65536]
    if b"\x00" in head:
        raise DataError(
            "the file looks binary (it contains NUL bytes), not a CSV text file; export the data as CSV "
            "(comma- or semicolon-separated text) and upload that."
        )
    try:
        text, encoding = data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "latin-1"
    # Plain ASCII control bytes decode as UTF-8 too, so this check applies to both encodings.
    control = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\r\n\t")
    if control > 0.01 * min(len(text), 65536):
        raise DataError(
            "the file is not readable text in UTF-8 or Latin-1 (it has many control characters); "
            "save it as a UTF-8 CSV and try again."
        )
    return text, encoding


def _sniff_delimiter(text: str) -> str:
    sample = text[:32768]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        first_line = sample.splitlines()[0] if sample else ""
        counts = {d: first_line.count(d) for d in _DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] > 0 else ","


def _unique_names(names: list[str]) -> list[str]:
    """Column names made unique the way pandas does it: later copies get a .1, .2 … suffix."""
    used: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 0
        while candidate in used:
            n += 1
            candidate = f"{name}.{n}"
        used.add(candidate)
        unique.append(candidate)
    return unique


def _coerce_mostly_numeric(frame: pd.DataFrame, warnings: list[str]) -> pd.DataFrame:
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        non_null = series.dropna()
        if non_null.empty:
            continue
        numbers = pd.to_numeric(non_null, errors="coerce")
        n_bad = int(numbers.isna().sum())
        if 0 < n_bad <= 0.05 * len(non_null) and len(non_null) >= 20:
            examples = ", ".join(repr(v) for v in non_null[numbers.isna()].unique()[:3])
            frame[column] = pd.to_numeric(series, errors="coerce")
            warnings.append(
                f"column {column!r}: {n_bad} value(s) that are not numbers ({examples}) were treated as missing."
            )
    return frame


def infer_roles(frame: pd.DataFrame) -> dict[str, str]:
    """Guess each column's role from its name and content.

    Examples
    --------
    >>> infer_roles(pd.DataFrame({'x': [1.0, 2.0], 'label': [0, 1], 'city': ['a', 'b']}))
    {'x': 'feature', 'label': 'label', 'city': 'categorical'}
    """
    roles: dict[str, str] = {}
    for column in frame.columns:
        series = frame[column]
        key = re.sub(r"[^a-z0-9_]", "", str(column).strip().lower().replace(" ", "_"))
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if series.isna().all():
            roles[column] = "ignore"
        elif key in _LABEL_NAMES and "label" not in roles.values() and series.nunique(dropna=True) <= _MAX_CATEGORIES:
            roles[column] = "label"
        elif key in _TIME_NAMES and "time" not in roles.values():
            roles[column] = "time"
        elif pd.api.types.is_datetime64_any_dtype(series):
            roles[column] = "time" if "time" not in roles.values() else "ignore"
        elif numeric:
            roles[column] = "feature"
        elif series.nunique(dropna=True) <= _MAX_CATEGORIES:
            roles[column] = "categorical"
        else:
            roles[column] = "ignore"
    return roles


def table_from_frame(frame: pd.DataFrame, name: str = "data", roles: dict[str, str] | None = None) -> Table:
    """Wrap an in-memory frame (a bundled dataset) as a :class:`Table` with inferred roles."""
    if frame.empty or len(frame.columns) == 0:
        raise DataError("the table is empty: it needs at least one column and one row.")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    table = Table(frame=frame, roles=infer_roles(frame), name=name)
    table.warnings.extend(_column_warnings(frame))
    return table.with_roles(roles) if roles else table


def _column_warnings(frame: pd.DataFrame) -> list[str]:
    warnings = []
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if empty:
        warnings.append(f"column(s) {', '.join(map(repr, empty[:10]))} are entirely empty and will be ignored.")
    constant = [c for c in frame.columns if frame[c].nunique(dropna=True) == 1]
    if constant:
        warnings.append(
            f"column(s) {', '.join(map(repr, constant[:10]))} hold a single value; they carry no information."
        )
    return warnings


def read_csv_bytes(data: bytes, name: str = "upload.csv", limits: IngestLimits = DEFAULT_LIMITS) -> Table:
    """Parse uploaded CSV bytes into a :class:`Table`.

    Parameters
    ----------
    data : bytes
        The raw upload.
    name : str
        The file's display name (only shown, never used as a path).
    limits : IngestLimits
        Bounds on bytes, rows, columns and cells.

    Raises
    ------
    DataError
        For empty, binary, undecodable, ragged, too large, too wide or too long input.

    Examples
    --------
    >>> table = read_csv_bytes(b"a;b;label\\n1;2;0\\n3;4;1\\n")
    >>> table.delimiter, table.roles['label']
    (';', 'label')
    """
    if data is None or len(data) == 0:
        raise DataError("the file is empty; upload a CSV with a header row and at least one data row.")
    if len(data) > limits.max_bytes:
        raise DataError(
            f"the file is {len(data) / 2**20:.1f} MB; the limit is {limits.max_bytes / 2**20:.0f} MB. "
            "Upload a sample of the rows or fewer columns."
        )
    # Old Mac files end lines with a bare CR, so count whichever line ending the file uses.
    n_lines = max(data.count(b"\n"), data.count(b"\r")) + (0 if data.endswith((b"\n", b"\r")) else 1)
    if n_lines - 1 > limits.max_rows:
        raise DataError(
            f"the file has about {n_lines - 1:,} rows; the limit is {limits.max_rows:,}. Upload a sample of the rows."
        )
    text, encoding = _decode(data)
    if not text.strip():
        raise DataError("the file holds only whitespace; upload a CSV with a header row and data rows.")
    delimiter = _sniff_delimiter(text)
    records = csv.reader(io.StringIO(text[:1_000_000], newline=""), delimiter=delimiter)
    try:
        first_line = next(records, [])
        first_row = next((r for r in records if r), [])
    except csv.Error as exc:
        raise DataError(f"the file is not valid CSV ({exc}).") from exc
    if len(first_line) > limits.max_columns:
        raise DataError(
            f"the file has {len(first_line):,} columns; the limit is {limits.max_columns:,}. "
            "Keep the columns you need and upload again."
        )
    if (n_lines - 1) * len(first_line) > limits.max_cells:
        raise DataError(
            f"the file has about {(n_lines - 1) * len(first_line):,} cells; the limit is {limits.max_cells:,}. "
            "Upload fewer rows or columns."
        )
    warnings: list[str] = []
    header = [h.strip() for h in first_line]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        warnings.append(
            f"duplicate column name(s) {', '.join(map(repr, duplicates[:10]))}: later copies were renamed "
            "with a .1, .2 … suffix."
        )
    # A first data row longer than the header makes pandas silently use the first column(s) as the
    # index, shifting every value one column to the right. Name the extra fields ourselves instead:
    # empty ones (rows ending with a delimiter) are dropped, anything else is a ragged file.
    n_extra = max(len(first_row) - len(first_line), 0)
    names = _unique_names(header) + [f"__extra_{i}" for i in range(n_extra)] if n_extra else None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, engine="c", skipinitialspace=True, low_memory=False,
                            header=0, names=names, index_col=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file has no columns; the first line must be a header such as 'a,b,c'.") from exc
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, seen = match.groups()
            raise DataError(
                f"line {line} has {seen} fields but the header has {expected}; every row needs the same number "
                "of fields (check for unquoted delimiters inside values)."
            ) from exc
        raise DataError(f"the file is not valid CSV ({str(exc).strip()[:200]}).") from exc
    if n_extra:
        extra = [f"__extra_{i}" for i in range(n_extra)]
        if frame[extra].notna().any().any():
            raise DataError(
                f"line 2 has {len(first_row)} fields but the header has {len(first_line)}; every row needs the same "
                "number of fields (check for unquoted delimiters inside values)."
            )
        frame = frame.drop(columns=extra)
        warnings.append("the data rows end with an extra delimiter; the empty last field was ignored.")
    # Stripping can make names equal again ('a ' and 'a'), so make them unique after it.
    frame.columns = _unique_names([str(c).strip() for c in frame.columns])
    if len(frame.columns) == 0:
        raise DataError("the file has no columns; the first line must be a header such as 'a,b,c'.")
    if frame.empty:
        raise DataError("the file has a header but no data rows; add rows below the header.")
    if len(frame) == 1:
        warnings.append("the file has a single data row: enough to look at, too few to train a model.")
    frame = _coerce_mostly_numeric(frame, warnings)
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_float_dtype(series) and np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan)).any():
            count = int(np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan)).sum())
            warnings.append(f"column {column!r} has {count} infinite value(s); they count as missing values.")
    warnings.extend(_column_warnings(frame))
    return Table(frame=frame, roles=infer_roles(frame), name=name, encoding=encoding, delimiter=delimiter,
                 warnings=warnings)


def feature_matrix(
    frame: pd.DataFrame, columns: list[str], *, missing: str = "error"
) -> tuple[np.ndarray, np.ndarray]:
    """The numeric matrix of ``columns``, with a policy for missing and infinite values.

    Parameters
    ----------
    frame : pandas.DataFrame
    columns : list of str
        Numeric columns to use, in order.
    missing : {'error', 'drop', 'median'}
        What to do with rows holding NaN or inf: raise, drop them, or fill with the column median.

    Returns
    -------
    X : numpy.ndarray of float32, shape (n_rows, len(columns))
    rows : numpy.ndarray of int
        Positions in ``frame`` of the rows kept.

    Examples
    --------
    >>> X, rows = feature_matrix(pd.DataFrame({'a': [1.0, np.nan, 3.0]}), ['a'], missing='drop')
    >>> X.ravel().tolist(), rows.tolist()
    ([1.0, 3.0], [0, 2])
    """
    if not columns:
        raise DataError("no feature columns are selected; pick at least one numeric column.")
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise DataError(f"column(s) {unknown[:5]} are not in the data.")
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise DataError(
            f"column(s) {', '.join(map(repr, text[:5]))} are not numeric; leave them out or mark them categorical."
        )
    if frame.empty:
        raise DataError("the data has no rows.")
    X = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(X)
    rows = np.arange(len(frame))
    if bad.any():
        bad_rows = bad.any(axis=1)
        if missing == "error":
            raise DataError(
                f"{int(bad_rows.sum())} row(s) have missing or infinite values in the selected columns; "
                "choose to drop or fill them, or clean the file."
            )
        if missing == "drop":
            X, rows = X[~bad_rows], rows[~bad_rows]
            if len(X) == 0:
                raise DataError("every row has a missing or infinite value in the selected columns.")
        elif missing == "median":
            X = np.where(bad, np.nan, X)
            medians = np.nanmedian(X, axis=0)
            if np.isnan(medians).any():
                empty = [c for c, m in zip(columns, medians) if np.isnan(m)]
                raise DataError(f"column(s) {empty[:5]} have no finite values to fill with; leave them out.")
            X = np.where(np.isnan(X), medians, X)
        else:
            raise ValueError(f"missing must be 'error', 'drop' or 'median', got {missing!r}.")
    return X.astype(np.float32), rows
