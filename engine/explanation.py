"""The ``Explanation`` object returned by every explainer.

It holds ``meta`` (how the explanation was made) and ``data`` (what it found), gives attribute
access to data keys (``exp.anchor``, ``exp.PN``), and round-trips losslessly through JSON,
numpy arrays included (dtype and shape are kept).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import numpy as np

from engine.errors import ArchiveError

_ARRAY_TAG = "__ndarray__"


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "OV":
            return {_ARRAY_TAG: "list", "data": [_encode(v) for v in value.tolist()]}
        if value.dtype.kind == "U":
            return {_ARRAY_TAG: "str", "dtype": value.dtype.str, "shape": list(value.shape),
                    "data": value.ravel().tolist()}
        contiguous = np.ascontiguousarray(value)
        return {
            _ARRAY_TAG: "b64",
            "dtype": contiguous.dtype.str,
            "shape": list(contiguous.shape),
            "data": base64.b64encode(contiguous.tobytes()).decode("ascii"),
        }
    if isinstance(value, np.generic):
        return _encode(value.item())  # a NaN numpy scalar must take the float path below
    if isinstance(value, dict):
        if _ARRAY_TAG not in value and all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        # JSON keys are strings; keep other keys (and a key that looks like our tag) by storing pairs.
        return {_ARRAY_TAG: "dict", "items": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {_ARRAY_TAG: "float", "data": repr(value)}
    return value


_ALLOWED_DTYPE_KINDS = set("biufcUS")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        tag = value.get(_ARRAY_TAG)
        if tag is None:
            return {k: _decode(v) for k, v in value.items()}
        if tag == "float":
            return float(value["data"])
        if tag == "dict":
            return {_hashable(_decode(k)): _decode(v) for k, v in value["items"]}
        if tag == "list":
            return np.array([_decode(v) for v in value["data"]], dtype=object)
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in _ALLOWED_DTYPE_KINDS:
            raise ArchiveError(f"unsupported array dtype {dtype} in explanation JSON.")
        shape = tuple(int(s) for s in value["shape"])
        if tag == "str":
            return np.array(value["data"], dtype=dtype).reshape(shape)
        if tag == "b64":
            raw = base64.b64decode(value["data"], validate=True)
            return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        raise ArchiveError(f"unknown array encoding {tag!r} in explanation JSON.")
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class Explanation:
    """Result of an explainer: ``meta`` and ``data`` dicts with attribute access to data keys.

    Examples
    --------
    >>> exp = Explanation(meta={'name': 'CEM'}, data={'PN': np.zeros((1, 4))})
    >>> exp.PN.shape
    (1, 4)
    >>> Explanation.from_json(exp.to_json()).PN.dtype
    dtype('float64')
    """

    def __init__(self, meta: dict, data: dict):
        self.meta = meta
        self.data = data

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: expose data keys as attributes.
        data = self.__dict__.get("data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"Explanation has no attribute or data key {name!r}")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Explanation):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Explanation(meta={self.meta.get('name')!r}, data keys={sorted(self.data)})"

    def to_json(self) -> str:
        """Serialise to a JSON string that :meth:`from_json` restores exactly."""
        return json.dumps({"meta": _encode(self.meta), "data": _encode(self.data)}, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Explanation":
        """Restore an explanation written by :meth:`to_json`."""
        try:
            payload = json.loads(text)
            return cls(meta=_decode(payload["meta"]), data=_decode(payload["data"]))
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"not a Lantern explanation JSON ({exc}).") from exc

    def copy(self) -> "Explanation":
        return Explanation(copy.deepcopy(self.meta), copy.deepcopy(self.data))
