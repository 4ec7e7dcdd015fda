"""Formula-injection-safe CSV export (engine.export)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from engine.export import escape_formula, safe_csv_bytes

DANGEROUS = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


@pytest.mark.parametrize("text", DANGEROUS)
def test_text_starting_like_a_formula_is_prefixed_with_a_quote(text):
    assert escape_formula(text) == "'" + text


@pytest.mark.parametrize("value", ["plain", "", "a=b", " =1", "'=already", 1, -1.5, None, np.float64(-2.0)])
def test_other_values_are_left_alone(value):
    assert escape_formula(value) is value


def test_values_and_headers_are_escaped_numbers_untouched():
    frame = pd.DataFrame({
        "=label": ["=cmd()", "ok", "@x"],
        "score": [-1.5, 2.0, -0.25],
        "count": [-3, 4, 5],
        "note": ["+44 20", "-minus", "fine"],
    })
    text = safe_csv_bytes(frame).decode("utf-8")
    lines = text.splitlines()
    assert lines[0] == "'=label,score,count,note"
    assert lines[1] == "'=cmd(),-1.5,-3,'+44 20"
    assert lines[2] == "ok,2.0,4,'-minus"
    assert lines[3] == "'@x,-0.25,5,fine"
    assert text.count("\r\n") == 4 and text.endswith("\r\n")  # RFC 4180 line ends


def test_line_breaks_inside_cells_are_quoted_and_do_not_split_rows():
    frame = pd.DataFrame({"note": ["a\rb", "c\nd", "e\r\nf", "plain"], "n": [1, 2, 3, 4]})
    back = pd.read_csv(io.BytesIO(safe_csv_bytes(frame)))
    assert back["note"].tolist() == ["a\rb", "c\nd", "e\r\nf", "plain"]
    assert back["n"].tolist() == [1, 2, 3, 4]


def test_no_cell_of_the_export_starts_like_a_formula_except_numbers():
    frame = pd.DataFrame({c: [c, c + "x", 1] for c in DANGEROUS}, dtype=object)
    frame["num"] = [-1.0, -2.0, -3.0]
    back = pd.read_csv(io.BytesIO(safe_csv_bytes(frame)), dtype=str, keep_default_na=False)
    cells = list(back.columns) + back.to_numpy().ravel().tolist()
    offending = [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r")) or
                 (c.startswith("-") and not _is_number(c))]
    assert offending == []


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_round_trip_through_read_csv_keeps_numbers_and_shows_escaped_text():
    frame = pd.DataFrame({
        "id": [1, 2, 3],
        "score": [0.125, -7.5, np.nan],
        "flag": [True, False, True],
        "text": ["=1+1", "normal, with comma", 'quote "inside"'],
    })
    back = pd.read_csv(io.BytesIO(safe_csv_bytes(frame)))
    assert list(back.columns) == ["id", "score", "flag", "text"]
    pd.testing.assert_series_equal(back["id"], frame["id"])
    pd.testing.assert_series_equal(back["score"], frame["score"])
    assert back["flag"].tolist() == [True, False, True]
    assert back["text"].tolist() == ["'=1+1", "normal, with comma", 'quote "inside"']


def test_categorical_and_string_dtype_columns_are_escaped():
    frame = pd.DataFrame({
        "cat": pd.Categorical(["=a", "b"]),
        "string": pd.array(["-x", "y"], dtype="string"),
    })
    back = pd.read_csv(io.BytesIO(safe_csv_bytes(frame)))
    assert back["cat"].tolist() == ["'=a", "b"]
    assert back["string"].tolist() == ["'-x", "y"]


def test_index_is_written_and_escaped_when_asked():
    frame = pd.DataFrame({"v": [1, 2]}, index=pd.Index(["=evil", "ok"], name="row"))
    lines = safe_csv_bytes(frame, index=True).decode().splitlines()
    assert lines == ["row,v", "'=evil,1", "ok,2"]
    assert safe_csv_bytes(frame).decode().splitlines() == ["v", "1", "2"]


def test_the_input_frame_is_not_modified():
    frame = pd.DataFrame({"=h": ["=v"]})
    safe_csv_bytes(frame)
    assert list(frame.columns) == ["=h"] and frame.iloc[0, 0] == "=v"


def test_utf8_text_survives():
    frame = pd.DataFrame({"city": ["Köln", "日本"]})
    assert pd.read_csv(io.BytesIO(safe_csv_bytes(frame)))["city"].tolist() == ["Köln", "日本"]
