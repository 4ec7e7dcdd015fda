"""Uploaded CSV bytes → a checked Table, or a DataError that says what is wrong (engine.ingest)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import ingest
from engine.errors import DataError
from engine.ingest import (
    DEFAULT_LIMITS,
    ROLES,
    IngestLimits,
    Table,
    feature_matrix,
    infer_roles,
    read_csv_bytes,
    table_from_frame,
)
from tests.bad_csv import ERRORS, EXPECTED, WARNINGS, bad_csv_corpus

CORPUS = bad_csv_corpus(include_huge=False)


def _contains_all(text: str, words) -> bool:
    return all(word in text for word in words)


# -- the bad-CSV corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ERRORS if n in CORPUS])
def test_bad_csv_is_refused_with_a_message_naming_the_problem(name):
    with pytest.raises(DataError) as info:
        read_csv_bytes(CORPUS[name], name=f"{name}.csv")
    _, words = EXPECTED[name]
    assert _contains_all(str(info.value), words), str(info.value)


@pytest.mark.parametrize("name", WARNINGS)
def test_awkward_csv_is_accepted_with_a_warning(name):
    table = read_csv_bytes(CORPUS[name], name=f"{name}.csv")
    _, words = EXPECTED[name]
    assert isinstance(table, Table)
    assert any(_contains_all(w, words) for w in table.warnings), table.warnings


@pytest.mark.parametrize("name", [n for n, (outcome, _) in EXPECTED.items() if outcome == "ok"])
def test_awkward_but_valid_csv_is_accepted_without_warnings(name):
    table = read_csv_bytes(CORPUS[name], name=f"{name}.csv")
    assert len(table.frame) == 3 and table.warnings == []


def test_corpus_and_expectations_name_the_same_cases():
    assert set(bad_csv_corpus(include_huge=False)) | {"huge_200mb"} == set(EXPECTED)


def test_200mb_file_is_refused_by_size_before_any_parsing(monkeypatch):
    data = bad_csv_corpus()["huge_200mb"]
    assert len(data) > 200 * 2**20

    def no_parse(*args, **kwargs):
        raise AssertionError("the CSV parser must not run on an oversized upload")

    monkeypatch.setattr(pd, "read_csv", no_parse)
    monkeypatch.setattr(ingest, "_decode", no_parse)
    monkeypatch.setattr(ingest, "_sniff_delimiter", no_parse)
    with pytest.raises(DataError, match=r"the file is 200\.0 MB; the limit is 50 MB"):
        read_csv_bytes(data)


def test_high_bytes_junk_without_nul_bytes_is_refused_as_unreadable_text():
    rng = np.random.default_rng(1)
    junk = rng.integers(1, 256, size=3000, dtype=np.uint8).tobytes()  # not UTF-8, no NUL byte
    assert b"\x00" not in junk
    with pytest.raises(DataError, match="not readable text in UTF-8 or Latin-1"):
        read_csv_bytes(junk)


def test_old_mac_line_endings_are_read():
    table = read_csv_bytes(CORPUS["mac_cr_line_endings"])
    assert table.frame.to_dict("list") == {"a": [1, 4, 7], "b": [2, 5, 8], "c": [3, 6, 9]}
    assert table.warnings == []


def test_row_limit_counts_bare_cr_line_endings():
    with pytest.raises(DataError, match="the limit is 10"):
        read_csv_bytes(b"a,b\r" + b"1,2\r" * 20, limits=IngestLimits(max_rows=10))


def test_latin1_text_is_read_with_the_latin1_encoding():
    table = read_csv_bytes(CORPUS["latin1"], name="latin1.csv")
    assert table.encoding == "latin-1"
    assert table.frame["name"].tolist() == ["José", "Ana", "Zoë"]
    assert table.frame["city"].tolist() == ["Köln", "München", "Zürich"]
    assert table.frame["score"].tolist() == [1.5, 2.5, 3.5]
    assert table.roles == {"name": "categorical", "city": "categorical", "score": "feature"}


def test_utf8_with_bom_is_utf8_and_the_bom_is_not_part_of_the_first_name():
    table = read_csv_bytes("\ufeffnäme,b\nä,1\nö,2\n".encode("utf-8"))
    assert table.encoding == "utf-8"
    assert list(table.frame.columns) == ["näme", "b"]


def test_ten_thousand_columns_are_refused_before_the_full_parse(monkeypatch):
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("parsed a too-wide file"))
    with pytest.raises(DataError, match="10,000 columns; the limit is 1,000"):
        read_csv_bytes(CORPUS["wide_10000_columns"])


def test_too_many_rows_are_refused_before_the_full_parse(monkeypatch):
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("parsed a too-long file"))
    data = b"a,b\n" + b"1,2\n" * 101
    with pytest.raises(DataError, match="about 101 rows; the limit is 100"):
        read_csv_bytes(data, limits=IngestLimits(max_rows=100))


def test_too_many_cells_are_refused():
    data = b"a,b,c,d\n" + b"1,2,3,4\n" * 30
    with pytest.raises(DataError, match="cells; the limit is 100"):
        read_csv_bytes(data, limits=IngestLimits(max_cells=100))


def test_ragged_rows_name_the_line_and_field_counts():
    with pytest.raises(DataError) as info:
        read_csv_bytes(CORPUS["ragged_rows"])
    assert "line 3 has 4 fields but the header has 3" in str(info.value)


def test_rows_longer_than_the_header_from_the_first_row_are_refused_not_shifted():
    # pandas would silently use the first column as the index and shift every value right.
    with pytest.raises(DataError, match="line 2 has 3 fields but the header has 2"):
        read_csv_bytes(b"a,b\n1,2,3\n4,5,6\n")


def test_rows_ending_with_a_delimiter_keep_their_values_in_place():
    table = read_csv_bytes(b"a,b\n1,2,\n3,4,\n")
    assert table.frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    assert any("extra delimiter" in w for w in table.warnings)


def test_short_rows_become_missing_values():
    table = read_csv_bytes(b"a,b,c\n1,2,3\n4,5\n6,7,8\n")
    assert table.frame["c"].isna().tolist() == [False, True, False]
    assert table.missing_report()["column"].tolist() == ["c"]


def test_unclosed_quote_is_invalid_csv():
    with pytest.raises(DataError, match="not valid CSV"):
        read_csv_bytes(b'a,b\n"1,2\n3,4\n')


def test_all_nan_column_is_kept_ignored_and_reported_missing():
    table = read_csv_bytes(CORPUS["all_nan_column"])
    assert table.roles["empty"] == "ignore"
    report = table.missing_report().set_index("column")
    assert report.loc["empty", "missing"] == 3
    assert report.loc["empty", "share"] == pytest.approx(1.0)


def test_infinite_values_are_counted_in_the_summary_and_missing_report():
    table = read_csv_bytes(CORPUS["inf_values"])
    summary = table.summary().set_index("column")
    assert summary.loc["b", "infinite"] == 2
    assert summary.loc["b", "min"] == 4.5 and summary.loc["b", "max"] == 4.5  # only finite values
    assert table.missing_report().set_index("column").loc["b", "infinite"] == 2


def test_duplicate_column_names_are_renamed():
    table = read_csv_bytes(CORPUS["duplicate_columns"])
    assert list(table.frame.columns) == ["x", "x.1", "y"]
    assert table.frame["x.1"].tolist() == [2, 5]


def test_names_equal_only_after_stripping_spaces_are_renamed_too():
    table = read_csv_bytes(b"a ,a\n1,2\n3,4\n")
    assert list(table.frame.columns) == ["a", "a.1"]
    assert table.frame["a.1"].tolist() == [2, 4]
    assert any("duplicate" in w for w in table.warnings)


def test_single_row_is_accepted_with_a_warning_about_training():
    table = read_csv_bytes(CORPUS["single_row"])
    assert len(table.frame) == 1
    assert any("too few to train" in w for w in table.warnings)


def test_mostly_numeric_column_with_a_few_typos_becomes_numeric_with_a_warning():
    rows = "\n".join(str(i) for i in range(40)) + "\nn/a?\n"
    table = read_csv_bytes(("value\n" + rows).encode())
    assert pd.api.types.is_numeric_dtype(table.frame["value"])
    assert table.frame["value"].isna().sum() == 1
    assert any("'n/a?'" in w and "treated as missing" in w for w in table.warnings)


# -- delimiters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, delimiter",
    [
        (b"a,b,label\n1,2,0\n3,4,1\n", ","),
        (b"a;b;label\n1;2;0\n3;4;1\n", ";"),
        (b"a\tb\tlabel\n1\t2\t0\n3\t4\t1\n", "\t"),
        (b"a|b|label\n1|2|0\n3|4|1\n", "|"),
    ],
)
def test_delimiter_is_sniffed(data, delimiter):
    table = read_csv_bytes(data)
    assert table.delimiter == delimiter
    assert list(table.frame.columns) == ["a", "b", "label"]
    assert table.frame["b"].tolist() == [2, 4]


def test_single_column_file_defaults_to_comma():
    table = read_csv_bytes(b"value\n1.5\n2.5\n")
    assert table.delimiter == ","
    assert table.frame["value"].tolist() == [1.5, 2.5]


def test_semicolon_file_keeps_commas_inside_values():
    table = read_csv_bytes(b"name;note\nx;a, b\ny;c, d\n")
    assert table.delimiter == ";"
    assert table.frame["note"].tolist() == ["a, b", "c, d"]


# -- roles ----------------------------------------------------------------------------------------


def test_roles_are_inferred_from_names_and_content():
    frame = pd.DataFrame({
        "timestamp": [1, 2, 3],
        "x": [0.1, 0.2, 0.3],
        "city": ["a", "b", "a"],
        "label": [0, 1, 0],
        "blank": [np.nan] * 3,
    })
    assert infer_roles(frame) == {
        "timestamp": "time", "x": "feature", "city": "categorical", "label": "label", "blank": "ignore",
    }


def test_only_one_label_and_one_time_column_are_inferred():
    frame = pd.DataFrame({"target": [0, 1], "label": [1, 0], "time": [1, 2], "t": [3, 4]})
    roles = infer_roles(frame)
    assert list(roles.values()).count("label") == 1 and roles["target"] == "label"
    assert list(roles.values()).count("time") == 1 and roles["time"] == "time"
    assert roles["label"] == "feature" and roles["t"] == "feature"


def test_label_named_column_with_many_values_is_not_a_label():
    frame = pd.DataFrame({"label": np.arange(100)})
    assert infer_roles(frame) == {"label": "feature"}


def test_high_cardinality_text_is_ignored():
    frame = pd.DataFrame({"id": [f"row-{i}" for i in range(80)]})
    assert infer_roles(frame) == {"id": "ignore"}


def test_with_roles_overrides_and_returns_a_copy():
    table = read_csv_bytes(b"a,b,label\n1,2,0\n3,4,1\n")
    changed = table.with_roles({"a": "ignore", "b": "label", "label": "feature"})
    assert changed.roles == {"a": "ignore", "b": "label", "label": "feature"}
    assert table.roles == {"a": "feature", "b": "feature", "label": "label"}  # the original is untouched
    assert changed.label == "b" and changed.columns_with_role("feature") == ["label"]
    assert changed.frame is table.frame


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nope": "feature"}, "there is no column 'nope'"),
        ({"a": "target"}, "role 'target' for 'a' is not one of feature, categorical, label, time, ignore"),
        ({"city": "feature"}, "column 'city' holds text, so it cannot be a numeric feature"),
        ({"a": "label"}, "only one column can be the label; 'a', 'label' all are"),
        ({"a": "time", "b": "time"}, "only one column can be the time"),
    ],
)
def test_with_roles_refuses_impossible_roles(overrides, message):
    table = read_csv_bytes(b"a,b,city,label\n1,2,x,0\n3,4,y,1\n")
    with pytest.raises(DataError) as info:
        table.with_roles(overrides)
    assert message in str(info.value)


def test_every_role_name_is_accepted_on_a_numeric_column():
    table = read_csv_bytes(b"a,b\n1,2\n3,4\n")
    for role in ROLES:
        assert table.with_roles({"a": role}).roles["a"] == role


def test_summary_describes_each_column():
    table = read_csv_bytes(b"a,b,c\n1,x,5\n2,y,5\n,x,5\n")
    summary = table.summary().set_index("column")
    assert summary.loc["a", "missing"] == 1 and summary.loc["a", "min"] == 1 and summary.loc["a", "max"] == 2
    assert summary.loc["b", "unique"] == 2 and pd.isna(summary.loc["b", "min"])
    assert bool(summary.loc["c", "constant"]) is True
    assert list(summary["role"]) == ["feature", "categorical", "feature"]


def test_table_from_frame_applies_default_roles_and_refuses_an_empty_frame():
    table = table_from_frame(pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), name="demo", roles={"y": "label"})
    assert table.name == "demo" and table.label == "y"
    with pytest.raises(DataError, match="the table is empty"):
        table_from_frame(pd.DataFrame())


def test_default_limits_are_the_documented_ones():
    assert DEFAULT_LIMITS.max_bytes == 50 * 1024 * 1024
    assert DEFAULT_LIMITS.max_columns == 1_000


# -- feature_matrix ------------------------------------------------------------------------------

FRAME = pd.DataFrame({"a": [1.0, np.nan, 3.0, 5.0], "b": [10.0, 20.0, np.inf, 40.0], "t": ["x", "y", "z", "w"]})


def test_feature_matrix_error_policy_counts_bad_rows():
    with pytest.raises(DataError, match="2 row\\(s\\) have missing or infinite values"):
        feature_matrix(FRAME, ["a", "b"])


def test_feature_matrix_drop_policy_keeps_positions_of_good_rows():
    X, rows = feature_matrix(FRAME, ["a", "b"], missing="drop")
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, [[1, 10], [5, 40]])
    np.testing.assert_array_equal(rows, [0, 3])


def test_feature_matrix_median_policy_fills_nan_and_inf_with_finite_medians():
    X, rows = feature_matrix(FRAME, ["a", "b"], missing="median")
    np.testing.assert_array_equal(rows, [0, 1, 2, 3])
    np.testing.assert_allclose(X, [[1, 10], [3, 20], [3, 20], [5, 40]])
    assert np.isfinite(X).all()


def test_feature_matrix_clean_data_passes_under_every_policy():
    for policy in ("error", "drop", "median"):
        X, rows = feature_matrix(FRAME.iloc[[0, 3]], ["a", "b"], missing=policy)
        assert X.shape == (2, 2) and rows.tolist() == [0, 1]


@pytest.mark.parametrize(
    "columns, kwargs, message",
    [
        ([], {}, "no feature columns are selected"),
        (["zz"], {}, "are not in the data"),
        (["t"], {}, "'t' are not numeric"),
        (["a"], {"missing": "drop"}, None),
    ],
)
def test_feature_matrix_refuses_bad_column_choices(columns, kwargs, message):
    if message is None:
        X, _ = feature_matrix(FRAME, columns, **kwargs)
        assert X.shape == (3, 1)
        return
    with pytest.raises(DataError, match=message):
        feature_matrix(FRAME, columns, **kwargs)


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_feature_matrix_when_nothing_is_left():
    frame = pd.DataFrame({"a": [np.nan, np.inf]})
    with pytest.raises(DataError, match="every row has a missing or infinite value"):
        feature_matrix(frame, ["a"], missing="drop")
    with pytest.raises(DataError, match="no finite values to fill with"):
        feature_matrix(frame, ["a"], missing="median")


def test_feature_matrix_unknown_policy_is_a_value_error():
    with pytest.raises(ValueError, match="missing must be 'error', 'drop' or 'median'"):
        feature_matrix(FRAME, ["a"], missing="zero")
