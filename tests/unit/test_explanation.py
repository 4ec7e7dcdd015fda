"""Explanation (engine.explanation): attribute access and a lossless JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine.errors import ArchiveError
from engine.explanation import Explanation


def round_trip(exp: Explanation) -> Explanation:
    return Explanation.from_json(exp.to_json())


@pytest.mark.parametrize(
    "array",
    [
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        np.array([[1, -(2**62)], [2**62, 0]], dtype=np.int64),
        np.array([True, False, True]),
        np.array([["a", "bé"], ["日本", ""]]),
        np.array([b"raw", b"x"]),
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([1.5 + 2j]),
        np.zeros((0, 3), dtype=np.float64),
        np.float32(3.25) * np.ones((2, 2), dtype=np.float32).T,  # a transposed (non C-contiguous) view
    ],
    ids=["float32", "int64", "bool", "str", "bytes", "uint8-3d", "complex", "empty", "transposed"],
)
def test_arrays_keep_values_dtype_and_shape(array):
    restored = round_trip(Explanation(meta={}, data={"x": array})).data["x"]
    assert isinstance(restored, np.ndarray)
    assert restored.dtype == array.dtype and restored.shape == array.shape
    np.testing.assert_array_equal(restored, array)


def test_float_bits_are_exact_including_nan_and_inf_in_arrays():
    array = np.array([np.pi, np.nan, np.inf, -np.inf, 1e-45, -0.0], dtype=np.float64)
    restored = round_trip(Explanation({}, {"x": array})).x
    assert restored.tobytes() == array.tobytes()


def test_nested_dicts_lists_and_plain_values_round_trip():
    data = {
        "anchor": ["age > 30", "hours <= 40"],
        "raw": {"precision": [0.5, 0.9], "names": {"a": 1, "b": [True, None, "x"]}, "instances": [np.ones(2)]},
        "nan": float("nan"),
        "inf": float("inf"),
        "minus_inf": -math.inf,
        "count": 3,
    }
    meta = {"name": "AnchorTabular", "type": ["blackbox"], "params": {"threshold": 0.95, "seed": None}}
    restored = round_trip(Explanation(meta=meta, data=data))
    assert restored.meta == meta
    assert restored.anchor == data["anchor"]
    assert restored.raw["names"] == {"a": 1, "b": [True, None, "x"]}
    np.testing.assert_array_equal(restored.raw["instances"][0], np.ones(2))
    assert math.isnan(restored.nan) and restored.inf == math.inf and restored.minus_inf == -math.inf
    assert restored.count == 3 and isinstance(restored.count, int)


def test_numpy_scalars_including_nan_become_python_numbers():
    data = {"f": np.float32(0.5), "i": np.int64(7), "nan": np.float64("nan"), "inf": np.float32("-inf"),
            "b": np.bool_(True)}
    restored = round_trip(Explanation({}, data))
    assert restored.f == 0.5 and restored.i == 7 and restored.b is True
    assert math.isnan(restored.nan) and restored.inf == -math.inf


def test_non_string_dict_keys_are_kept():
    data = {"categorical_names": {0: ["a", "b"], 3: ["x"]}, "by_pair": {(1, 2): "p"}, "none": {None: 1}}
    restored = round_trip(Explanation({}, data))
    assert restored.categorical_names == {0: ["a", "b"], 3: ["x"]}
    assert restored.by_pair == {(1, 2): "p"} and restored.none == {None: 1}


def test_a_user_key_that_looks_like_the_array_tag_is_kept():
    restored = round_trip(Explanation({}, {"d": {"__ndarray__": "not mine"}}))
    assert restored.d == {"__ndarray__": "not mine"}


def test_object_arrays_come_back_as_object_arrays():
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1, 2], "x"
    restored = round_trip(Explanation({}, {"o": ragged})).o
    assert restored.dtype == object and restored[0] == [1, 2] and restored[1] == "x"


def test_to_json_is_strict_json():
    text = Explanation({"name": "CEM"}, {"PN": np.array([np.nan]), "v": float("nan")}).to_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_to_json_writes_plain_lists_and_numbers_as_the_reference_does():
    exp = Explanation(
        meta={"name": "CEM", "params": {"kappa": np.float32(0.5), "c_steps": np.int64(10)}},
        data={"PN": np.array([[0.25, 1.0, np.nan]], dtype=np.float32), "PN_pred": np.int64(2),
              "grid": np.arange(6, dtype=np.uint8).reshape(2, 3), "names": np.array(["a", "b"]),
              "categorical_names": {0: ["x", "y"]}, "complex": np.array([1 + 2j])},
    )
    payload = json.loads(exp.to_json())
    assert payload["data"]["PN"] == [[0.25, 1.0, None]]
    assert payload["data"]["PN_pred"] == 2 and payload["data"]["grid"] == [[0, 1, 2], [3, 4, 5]]
    assert payload["data"]["names"] == ["a", "b"] and payload["data"]["categorical_names"] == {"0": ["x", "y"]}
    assert payload["data"]["complex"] == [[1.0, 2.0]]
    assert payload["meta"] == {"name": "CEM", "params": {"kappa": 0.5, "c_steps": 10}}
    back = Explanation.from_json(exp.to_json())
    assert back.PN.dtype == np.float32 and np.isnan(back.PN[0, 2]) and back.categorical_names == {0: ["x", "y"]}


def test_explanations_written_by_earlier_versions_still_load():
    legacy = ('{"meta": {"name": "CEM"}, "data": {"PN": {"__ndarray__": "b64", "dtype": "<f4", "shape": [2], '
              '"data": "AACAPwAAAEA="}, "keys": {"__ndarray__": "dict", "items": [[0, "a"]]}}}')
    exp = Explanation.from_json(legacy)
    assert exp.PN.dtype == np.float32 and exp.PN.tolist() == [1.0, 2.0] and exp.keys == {0: "a"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"meta": {}, "data": {"x": [1, 2, 3]}, "types": {"/data/x": {"dtype": "<f4", "shape": [2]}}}',
         "not a Lantern explanation JSON"),
        ('{"meta": {}, "data": {"x": [1]}, "types": {"/data/x": {"dtype": "|O", "shape": [1]}}}',
         "unsupported array dtype object"),
        ('{"meta": {}, "data": {"x": [1]}, "types": {"/data/x": {"dtype": "V8", "shape": [1]}}}',
         "unsupported array dtype"),
        ('{"meta": {}, "data": {"x": null}, "types": {"/data/x": {"float": "huge"}}}', "bad float"),
        ('{"meta": {}, "data": {"x": {"a": 1}}, "types": {"/data/x": {"keys": [1, 2]}}}', "do not match"),
        ('{"meta": {}, "data": {}, "types": [1]}', "not an object"),
    ],
    ids=["shape", "object-dtype", "void-dtype", "bad-float", "keys", "types-not-object"],
)
def test_corrupt_plain_json_is_an_archive_error(text, message):
    with pytest.raises(ArchiveError, match=message):
        Explanation.from_json(text)


def test_attribute_and_item_access_to_data_keys():
    exp = Explanation(meta={"name": "CEM"}, data={"PN": np.zeros((1, 4)), "PN_pred": 2})
    assert exp.PN.shape == (1, 4) and exp["PN_pred"] == 2
    assert exp.meta["name"] == "CEM"
    with pytest.raises(AttributeError, match="Explanation has no attribute or data key 'PP'"):
        exp.PP
    with pytest.raises(KeyError):
        exp["PP"]


def test_equality_copy_and_repr():
    exp = Explanation({"name": "CEM"}, {"PN": np.arange(3)})
    assert exp == round_trip(exp)
    assert exp != Explanation({"name": "CEM"}, {"PN": np.arange(4)})
    clone = exp.copy()
    clone.data["PN"][0] = 99
    assert exp.PN[0] == 0
    assert repr(exp) == "Explanation(meta='CEM', data keys=['PN'])"


def test_from_json_accepts_bytes():
    exp = Explanation({"name": "x"}, {"a": np.arange(2)})
    assert round_trip(exp) == Explanation.from_json(exp.to_json().encode("utf-8"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a Lantern explanation JSON"),
        ("[1, 2]", "not a Lantern explanation JSON"),
        ('{"meta": {}}', "not a Lantern explanation JSON"),
        ('{"meta": {}, "data": {"x": {"__ndarray__": "b64", "dtype": "<f4", "shape": [3], "data": "AAAA"}}}',
         "not a Lantern explanation JSON"),
        ('{"meta": {}, "data": {"x": {"__ndarray__": "b64", "dtype": "<f4", "shape": [1], "data": "!!"}}}',
         "not a Lantern explanation JSON"),
        ('{"meta": {}, "data": {"x": {"__ndarray__": "b64", "dtype": "O", "shape": [1], "data": ""}}}',
         "unsupported array dtype object"),
        ('{"meta": {}, "data": {"x": {"__ndarray__": "pickle", "dtype": "<f4", "shape": [1], "data": ""}}}',
         "unknown array encoding 'pickle'"),
        ('{"meta": {}, "data": {"x": {"__ndarray__": "b64", "dtype": "no-such-type", "shape": [1], "data": ""}}}',
         "not a Lantern explanation JSON"),
    ],
    ids=["syntax", "list", "no-data", "short-buffer", "bad-base64", "object-dtype", "unknown-tag", "bad-dtype"],
)
def test_corrupt_json_is_an_archive_error(text, message):
    with pytest.raises(ArchiveError, match=message):
        Explanation.from_json(text)
