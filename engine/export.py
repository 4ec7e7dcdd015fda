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
