"""Exports that are safe to open in a spreadsheet.

A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is prefixed with a
single quote, so a spreadsheet shows it as text instead of running it as a formula (CSV/formula
injection). Numbers are written as numbers: a negative score is data, not a formula.
Lines end with CRLF (RFC 4180), so a carriage return inside a text cell is quoted like a newline
and cannot split a row.
"""

from __future__ import annotations

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """Prefix a string that a spreadsheet would read as a formula with ``'``.

    Examples
    --------
    >>> escape_formula('=1+1'), escape_formula('ok'), escape_formula(-1.5)
    ("'=1+1", 'ok', -1.5)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_csv_bytes(frame: pd.DataFrame, index: bool = False) -> bytes:
    """Encode ``frame`` as UTF-8 CSV with every text cell (header included) formula-escaped.

    Examples
    --------
    >>> safe_csv_bytes(pd.DataFrame({'name': ['=cmd()'], 'score': [-1.0]}))
    b"name,score\\r\\n'=cmd(),-1.0\\r\\n"
    """
    out = frame.copy()
    out.columns = [escape_formula(str(c)) for c in out.columns]
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]) or isinstance(
            out[column].dtype, pd.CategoricalDtype
        ):
            out[column] = out[column].astype(object).map(escape_formula)
    if index:
        out.index = out.index.map(escape_formula)
    # With a "\n" terminator Python's csv writer leaves a bare "\r" inside a cell unquoted, and every
    # reader then splits the row there; with "\r\n" both characters force quoting.
    return out.to_csv(index=index, lineterminator="\r\n").encode("utf-8")


def join_results(source: pd.DataFrame, rows, results: pd.DataFrame, *, reasons=None,
                 default_reason: str = "not scored") -> pd.DataFrame:
    """One row per row of ``source``, in its order: the row number, the source's columns, then ``results``.

    Parameters
    ----------
    source : DataFrame
        The table as the user gave it (every column, every row).
    rows : array-like of int
        Positions in ``source`` of the rows that ``results`` describes, in the same order.
    results : DataFrame
        The computed columns (scores, flags, predictions), one row per entry of ``rows``.
    reasons : mapping of int to str, optional
        Why a position of ``source`` has no result (e.g. ``{3: 'missing value in x1'}``).
    default_reason : str
        Reason given to a row without a result that ``reasons`` does not mention.

    Returns
    -------
    DataFrame
        ``row`` (the position in ``source``, as the page shows it), the source's columns, ``status``
        (``'scored'`` or ``'skipped'``), ``reason`` (empty when scored) and the result columns (empty when
        skipped). A result column named like a source column gets the suffix ``_result``.

    Examples
    --------
    >>> source = pd.DataFrame({'x': [1.0, None, 3.0], 'name': ['a', 'b', 'c']})
    >>> out = join_results(source, [0, 2], pd.DataFrame({'score': [0.1, 0.9]}),
    ...                    reasons={1: 'missing value in x'})
    >>> out[['row', 'name', 'status', 'reason', 'score']].to_dict('list')  # doctest: +NORMALIZE_WHITESPACE
    {'row': [0, 1, 2], 'name': ['a', 'b', 'c'], 'status': ['scored', 'skipped', 'scored'],
     'reason': ['', 'missing value in x', ''], 'score': [0.1, nan, 0.9]}
    """
    import numpy as np

    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(results):
        raise ValueError(f"{len(rows)} row positions for {len(results)} result rows")
    n = len(source)
    out = source.reset_index(drop=True).copy()
    out.insert(0, "row", np.arange(n))
    scored = np.zeros(n, dtype=bool)
    scored[rows] = True
    out["status"] = np.where(scored, "scored", "skipped")
    reason = np.full(n, "", dtype=object)
    reason[~scored] = default_reason
    for position, why in (reasons or {}).items():
        if 0 <= int(position) < n and not scored[int(position)]:
            reason[int(position)] = str(why)
    out["reason"] = reason
    placed = results.reset_index(drop=True).set_axis(rows, axis=0).reindex(np.arange(n))
    placed = placed.rename(columns={c: f"{c}_result" for c in placed.columns if c in out.columns})
    return pd.concat([out, placed], axis=1)
