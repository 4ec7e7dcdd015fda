"""The ``Explanation`` object returned by every explainer.

It holds ``meta`` (how the explanation was made) and ``data`` (what it found), gives attribute
access to data keys (``exp.anchor``, ``exp.PN``), and round-trips losslessly through JSON.

:meth:`Explanation.to_json` writes plain JSON, as the reference does: arrays become (nested) lists
of numbers, numpy scalars become numbers, so ``jq``, pandas or JavaScript read an exported
explanation directly. What plain JSON cannot say (an array's dtype and shape, a NaN or an
infinity, which is written as ``null``, dict keys that are not strings) is kept in a side field,
``types``, keyed by the JSON pointer of each value; :meth:`Explanation.from_json` uses it to
rebuild numpy arrays exactly. Files written by earlier Lantern versions (arrays as tagged
objects) still load.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import numpy as np

from engine.errors import ArchiveError

TYPES_KEY = "types"
_ALLOWED_DTYPE_KINDS = set("biufcUS")
_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _pointer(path: str, key: Any) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _nonfinite_name(value: float) -> str:
    return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")


def _plain_key(key: Any) -> Any:
    """A dict key as a JSON value for the side field (tuples as lists, numpy scalars as numbers)."""
    if isinstance(key, np.generic):
        return key.item()
    if isinstance(key, tuple):
        return [_plain_key(k) for k in key]
    return key


def _key_from_plain(key: Any) -> Any:
    return tuple(_key_from_plain(k) for k in key) if isinstance(key, list) else key


class _Writer:
    """Turns meta/data into plain JSON values, recording what plain JSON loses in ``types``."""

    def __init__(self) -> None:
        self.types: dict[str, dict] = {}

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, np.ndarray):
            return self.array(value, path)
        if isinstance(value, np.generic):
            return self.value(value.item(), path)
        if isinstance(value, dict):
            return self.mapping(value, path)
        if isinstance(value, (list, tuple)):
            return [self.value(v, _pointer(path, i)) for i, v in enumerate(value)]
        if isinstance(value, float) and not np.isfinite(value):
            self.types[path] = {"float": _nonfinite_name(value)}
            return None
        return value

    def mapping(self, value: dict, path: str) -> dict:
        if all(isinstance(k, str) for k in value):
            return {k: self.value(v, _pointer(path, k)) for k, v in value.items()}
        names: list[str] = []
        for i, key in enumerate(value):
            name = str(_plain_key(key))
            names.append(name if name not in names else f"{i}:{name}")
        self.types[path] = {"keys": [_plain_key(k) for k in value]}
        return {name: self.value(v, _pointer(path, name)) for name, v in zip(names, value.values())}

    def array(self, value: np.ndarray, path: str) -> Any:
        info: dict[str, Any] = {"dtype": value.dtype.str, "shape": list(value.shape)}
        kind = value.dtype.kind
        if kind == "O":
            info["dtype"] = "object"
            self.types[path] = info
            return [self.value(v, _pointer(path, i)) for i, v in enumerate(value.ravel().tolist())]
        if kind == "V":
            raise TypeError(f"cannot write an array of dtype {value.dtype} to explanation JSON.")
        if kind == "c":
            plain = np.stack([value.real, value.imag], axis=-1)
        elif kind == "S":
            plain = np.char.decode(value, "latin-1")
        else:
            plain = value
        if kind in "fc":
            bad = ~np.isfinite(plain)
            if bad.any():
                flat = plain.ravel()
                info["nonfinite"] = [[int(i), _nonfinite_name(flat[i])] for i in np.flatnonzero(bad.ravel())]
                plain = np.where(bad, 0.0, plain)
        self.types[path] = info
        out = plain.tolist()
        if "nonfinite" in info:
            out = _put_none(out, bad)
        return out


def _put_none(values: Any, bad: np.ndarray) -> Any:
    """``values`` (nested lists) with ``None`` wherever ``bad`` is True."""
    if bad.ndim == 0:
        return None if bad else values
    return [_put_none(v, b) for v, b in zip(values, bad)]


class _Reader:
    """Rebuilds meta/data from plain JSON values and the ``types`` side field."""

    def __init__(self, types: dict) -> None:
        if not isinstance(types, dict):
            raise ArchiveError("not a Lantern explanation JSON (its 'types' field is not an object).")
        self.types = types

    def value(self, value: Any, path: str) -> Any:
        info = self.types.get(path)
        if info is not None:
            if not isinstance(info, dict):
                raise ArchiveError(f"not a Lantern explanation JSON (bad type entry at {path!r}).")
            if "float" in info:
                if info["float"] not in _NONFINITE:
                    raise ArchiveError(f"not a Lantern explanation JSON (bad float at {path!r}).")
                return _NONFINITE[info["float"]]
            if "dtype" in info:
                return self.array(value, info, path)
            if "keys" in info:
                return self.mapping(value, info["keys"], path)
        if isinstance(value, dict):
            return {k: self.value(v, _pointer(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, _pointer(path, i)) for i, v in enumerate(value)]
        return value

    def mapping(self, value: Any, keys: Any, path: str) -> dict:
        if not isinstance(value, dict) or not isinstance(keys, list) or len(keys) != len(value):
            raise ArchiveError(f"not a Lantern explanation JSON (dict keys at {path!r} do not match).")
        return {_key_from_plain(k): self.value(v, _pointer(path, name))
                for k, (name, v) in zip(keys, value.items())}

    def array(self, value: Any, info: dict, path: str) -> np.ndarray:
        shape = tuple(int(s) for s in info.get("shape", ()))
        if info["dtype"] == "object":
            if not isinstance(value, list) or len(value) != int(np.prod(shape)):
                raise ArchiveError(f"not a Lantern explanation JSON (object array at {path!r} has the wrong size).")
            out = np.empty(len(value), dtype=object)
            for i, v in enumerate(value):
                out[i] = self.value(v, _pointer(path, i))
            return out.reshape(shape)
        dtype = np.dtype(info["dtype"])
        if dtype.kind not in _ALLOWED_DTYPE_KINDS:
            raise ArchiveError(f"unsupported array dtype {dtype} in explanation JSON.")
        nonfinite = info.get("nonfinite", [])
        if dtype.kind in "fc":
            array = np.array(value, dtype=np.float64)  # null -> nan; the exact non-finite values are set next
            for index, name in nonfinite:
                array.flat[int(index)] = _NONFINITE[name]
            if dtype.kind == "c":
                array = array[..., 0] + 1j * array[..., 1] if array.size else np.zeros(shape)
        elif dtype.kind == "S":
            array = np.char.encode(np.array(value, dtype=str), "latin-1") if len(value) else np.zeros(shape)
        else:
            array = np.array(value)
        return array.astype(dtype).reshape(shape)


def _legacy_decode(value: Any) -> Any:
    """Values written by Lantern before plain JSON: arrays as ``{"__ndarray__": ...}`` tagged objects."""
    if isinstance(value, dict):
        tag = value.get("__ndarray__")
        if tag is None:
            return {k: _legacy_decode(v) for k, v in value.items()}
        if tag == "float":
            return float(value["data"])
        if tag == "dict":
            return {_key_from_plain(_legacy_decode(k)): _legacy_decode(v) for k, v in value["items"]}
        if tag == "list":
            return np.array([_legacy_decode(v) for v in value["data"]], dtype=object)
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
        return [_legacy_decode(v) for v in value]
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
        """Serialise to plain JSON (lists and numbers) that :meth:`from_json` restores exactly.

        ``meta`` and ``data`` hold plain values, as in the reference; a third field, ``types``,
        keeps the dtypes, shapes, non-finite numbers and non-string keys that plain JSON loses.

        Examples
        --------
        >>> exp = Explanation(meta={'name': 'CEM'}, data={'PN': np.array([[0.5, 1.0]], dtype='float32')})
        >>> json.loads(exp.to_json())['data']['PN']
        [[0.5, 1.0]]
        """
        writer = _Writer()
        payload = {"meta": writer.value(self.meta, "/meta"), "data": writer.value(self.data, "/data")}
        payload[TYPES_KEY] = writer.types
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Explanation":
        """Restore an explanation written by :meth:`to_json` (or by an earlier Lantern version)."""
        try:
            payload = json.loads(text)
            if TYPES_KEY not in payload:
                return cls(meta=_legacy_decode(payload["meta"]), data=_legacy_decode(payload["data"]))
            reader = _Reader(payload[TYPES_KEY])
            return cls(meta=reader.value(payload["meta"], "/meta"), data=reader.value(payload["data"], "/data"))
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ArchiveError(f"not a Lantern explanation JSON ({exc}).") from exc

    def copy(self) -> "Explanation":
        return Explanation(copy.deepcopy(self.meta), copy.deepcopy(self.data))
