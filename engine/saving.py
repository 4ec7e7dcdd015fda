"""Saving and loading detectors and explainers as versioned archives.

An archive is a zip file holding exactly two members:

- ``manifest.json``: format name and version, the object kind and class, engine version, the
  object's JSON config (constructor arguments, network specs, learned scalars) and, optionally, the
  names of the feature columns it was trained on (``feature_names``; archives without it still load);
- ``arrays.npz``: every numpy array of learned state and network weights, read with
  ``allow_pickle=False``.

Loading rebuilds the networks from their specs with our own code (:mod:`engine.nets`) and then
sets the weights; nothing in the file is ever executed, and only registered classes can be
named. A foreign, corrupt, tampered or oversized file raises :class:`~engine.errors.ArchiveError`.

Classes take part by defining ``_archive_state(self) -> (config: dict, arrays: dict)`` and the
classmethod ``_from_archive(config, arrays)``, and by being decorated with
:func:`register_archivable`. The registry fills as the algorithm modules are imported; a lookup that
misses imports :mod:`engine.od`, :mod:`engine.ad` and :mod:`engine.explainers` once and tries again, so
``load_detector`` works in a fresh interpreter that imported nothing else.

Feature names: an object with a ``feature_names_`` attribute (a list of strings), or a
``feature_names=`` keyword to :func:`save_detector` / :func:`detector_to_bytes`, records the column
names in the manifest; loading sets ``feature_names_`` back on the object (``None`` when the archive has
none). The ``lantern`` command picks the input's columns by these names.

Threshold reference and preprocessing (optional; archives without them still load, with the attributes None):

- ``threshold_perc_`` (float in [0, 100]): the percentile of the training scores the detector's threshold was
  chosen at;
- ``reference_scores_`` (1-D float array, sorted, at most ``MAX_REFERENCE_SCORES``): the training score
  distribution the percentile refers to (e.g. its 101 quantiles, or the scores themselves when few);
- ``preprocessing_`` (a JSON object): how the table's columns become the detector's input (e.g. the columns and a
  :class:`~engine.preprocessing.OneHotEncoder`'s configuration), re-applied when scoring new data.

They are recorded in the manifest (``threshold_reference``, ``preprocessing``) when the object has them.
"""

from __future__ import annotations

import importlib
import io
import json
import zipfile
from pathlib import Path
from typing import IO, Any, Union

import keras
import numpy as np

from engine.archive_checks import MAX_COMPRESSION_RATIO, zip_problem  # noqa: F401 (the ratio is part of this API)
from engine.errors import ArchiveError
from engine.version import __version__

FORMAT_NAME = "lantern-archive"
FORMAT_VERSION = 1
MAX_MEMBER_BYTES = 512 * 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_MEMBERS = ("manifest.json", "arrays.npz")
_REGISTRY: dict[str, tuple[str, type]] = {}
# Modules whose import registers every archivable class; imported on a registry miss.
_ARCHIVABLE_MODULES = ("engine.od", "engine.ad", "engine.explainers")
MAX_FEATURE_NAMES = 100_000
MAX_REFERENCE_SCORES = 10_000

Source = Union[str, Path, bytes, bytearray, IO[bytes]]


def register_archivable(kind: str):
    """Class decorator registering a detector ('detector') or explainer ('explainer') for archives."""

    def decorator(cls: type) -> type:
        _REGISTRY[cls.__name__] = (kind, cls)
        return cls

    return decorator


def _registered(class_name: Any) -> tuple[str, type] | None:
    """The registry entry for ``class_name``, importing the algorithm modules first if it is not there yet."""
    if not isinstance(class_name, str):
        return None
    if class_name not in _REGISTRY:
        for module in _ARCHIVABLE_MODULES:
            importlib.import_module(module)
    return _REGISTRY.get(class_name)


def _checked_feature_names(names: Any, where: str) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise TypeError(f"feature names {where} must be a list of strings, got {type(names).__name__}.")
    names = list(names)
    if len(names) > MAX_FEATURE_NAMES or not all(isinstance(n, str) for n in names):
        raise TypeError(f"feature names {where} must be a list of at most {MAX_FEATURE_NAMES:,} strings.")
    if len(set(names)) != len(names):
        raise TypeError(f"feature names {where} must be distinct.")
    return names


def _metadata(obj: Any) -> dict:
    """The optional threshold reference and preprocessing of ``obj`` as manifest entries (see the module doc)."""
    out: dict[str, Any] = {}
    perc, reference = getattr(obj, "threshold_perc_", None), getattr(obj, "reference_scores_", None)
    if perc is not None or reference is not None:
        out["threshold_reference"] = {
            "percentile": None if perc is None else float(perc),
            "scores": None if reference is None else [float(v) for v in np.sort(np.ravel(reference))],
        }
    preprocessing = getattr(obj, "preprocessing_", None)
    if preprocessing is not None:
        if not isinstance(preprocessing, dict):
            raise TypeError(f"preprocessing_ must be a dict of JSON values, got {type(preprocessing).__name__}.")
        out["preprocessing"] = preprocessing
    return out


def _set_metadata(obj: Any, manifest: dict) -> None:
    """Set ``threshold_perc_``, ``reference_scores_`` and ``preprocessing_`` from ``manifest`` (None when absent)."""
    reference = manifest.get("threshold_reference") or {}
    preprocessing = manifest.get("preprocessing")
    try:
        if not isinstance(reference, dict) or not (preprocessing is None or isinstance(preprocessing, dict)):
            raise ValueError("not an object")
        perc = reference.get("percentile")
        perc = None if perc is None else float(perc)
        if perc is not None and not 0.0 <= perc <= 100.0:
            raise ValueError(f"percentile {perc} is not in [0, 100]")
        scores = reference.get("scores")
        if scores is not None:
            if not isinstance(scores, list) or not 0 < len(scores) <= MAX_REFERENCE_SCORES:
                raise ValueError(f"scores must be a list of 1 to {MAX_REFERENCE_SCORES:,} numbers")
            scores = np.sort(np.asarray(scores, dtype=np.float64))
            if not np.isfinite(scores).all():
                raise ValueError("scores must be finite")
    except (TypeError, ValueError) as exc:
        raise ArchiveError(f"the archive's threshold reference or preprocessing is malformed ({exc}).") from exc
    obj.threshold_perc_ = perc
    obj.reference_scores_ = scores
    obj.preprocessing_ = preprocessing


def model_weights(prefix: str, model: keras.Model) -> dict[str, np.ndarray]:
    """The weights of ``model`` as ``{f'{prefix}/{i}': array}``."""
    return {f"{prefix}/{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}


def set_model_weights(prefix: str, model: keras.Model, arrays: dict[str, np.ndarray]) -> None:
    """Load weights saved by :func:`model_weights` into ``model``, checking count and shapes."""
    expected = model.get_weights()
    stored = [arrays.get(f"{prefix}/{i}") for i in range(len(expected))]
    extra = [k for k in arrays if k.startswith(prefix + "/") and int(k.rsplit("/", 1)[1]) >= len(expected)]
    if any(w is None for w in stored) or extra:
        raise ArchiveError(f"archive weights for '{prefix}' do not match its network ({len(expected)} arrays expected).")
    for i, (want, got) in enumerate(zip(expected, stored)):
        if want.shape != got.shape:
            raise ArchiveError(f"archive weight {prefix}/{i} has shape {got.shape}, the network needs {want.shape}.")
    model.set_weights(stored)


def _to_bytes(obj: Any, kind: str, feature_names: Any = None) -> bytes:
    entry = _registered(type(obj).__name__)
    if entry is None or entry[1] is not type(obj) or entry[0] != kind:
        raise TypeError(f"{type(obj).__name__} cannot be saved as a {kind} archive.")
    config, arrays = obj._archive_state()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "class": type(obj).__name__,
        "engine_version": __version__,
        "config": config,
    }
    if feature_names is None:
        feature_names = getattr(obj, "feature_names_", None)
    feature_names = _checked_feature_names(feature_names, "to save")
    if feature_names is not None:
        manifest["feature_names"] = feature_names
    manifest.update(_metadata(obj))
    arrays_buffer = io.BytesIO()
    np.savez_compressed(arrays_buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, allow_nan=False, indent=1))
        zf.writestr("arrays.npz", arrays_buffer.getvalue())
    return out.getvalue()


def _read_source(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    if hasattr(source, "read"):
        return source.read()
    raise TypeError(f"cannot read an archive from {type(source).__name__}; pass a path, bytes or a binary file.")


def _check_npz_members(npz_bytes: bytes) -> None:
    """Bound what ``arrays.npz`` (itself a zip) may unpack to, before numpy reads any of it."""
    with zipfile.ZipFile(io.BytesIO(npz_bytes)) as npz:
        # Small members (zero biases) legitimately compress well; only large ones are suspicious.
        problem = zip_problem(npz.infolist(), max_total_bytes=MAX_MEMBER_BYTES, member_limit=MAX_MEMBER_BYTES)
        if problem is not None:
            raise ArchiveError(f"archive array {problem.member} is too large or compressed suspiciously.")


def _from_bytes(data: bytes, kind: str) -> Any:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ArchiveError("not a Lantern archive: the file is not a zip archive.") from exc
    with zf:
        infos = {info.filename: info for info in zf.infolist()}
        if sorted(infos) != sorted(_MEMBERS):
            raise ArchiveError(
                f"not a Lantern archive: expected members {list(_MEMBERS)}, found {sorted(infos)[:10]}."
            )
        problem = zip_problem(
            list(infos.values()), max_total_bytes=MAX_MANIFEST_BYTES + MAX_MEMBER_BYTES, ratio_above_bytes=0,
            member_limit=lambda info: MAX_MANIFEST_BYTES if info.filename == "manifest.json" else MAX_MEMBER_BYTES,
        )
        if problem is not None:
            raise ArchiveError(f"archive member {problem.member} is too large or compressed suspiciously.")
        try:
            manifest = json.loads(zf.read("manifest.json").decode("utf-8"))
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            raise ArchiveError(f"archive manifest is not valid JSON ({exc}).") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise ArchiveError("not a Lantern archive: the manifest has no Lantern format marker.")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArchiveError(
                f"archive format version {manifest.get('format_version')!r} is not supported "
                f"(this engine reads version {FORMAT_VERSION})."
            )
        if manifest.get("kind") != kind:
            raise ArchiveError(f"this archive holds a {manifest.get('kind')!r}, not a {kind}.")
        entry = _registered(manifest.get("class"))
        try:
            feature_names = _checked_feature_names(manifest.get("feature_names"), "in the archive")
        except TypeError as exc:
            raise ArchiveError(str(exc)) from exc
        if entry is None or entry[0] != kind:
            raise ArchiveError(f"archive names class {manifest.get('class')!r}, which this engine does not load.")
        try:
            npz_bytes = zf.read("arrays.npz")
            _check_npz_members(npz_bytes)
            with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except ArchiveError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ArchiveError(f"archive arrays are unreadable ({exc}).") from exc
        except MemoryError as exc:  # an array header declaring an impossible shape
            raise ArchiveError("archive arrays declare more data than can be loaded.") from exc
    try:
        obj = entry[1]._from_archive(manifest["config"], arrays)
    except ArchiveError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ArchiveError(f"archive content does not fit {manifest.get('class')} ({type(exc).__name__}: {exc}).") from exc
    obj.feature_names_ = feature_names
    _set_metadata(obj, manifest)
    return obj


def detector_to_bytes(detector: Any, *, feature_names: Any = None) -> bytes:
    """The archive of ``detector`` as bytes (for downloads); see :func:`save_detector` for ``feature_names``."""
    return _to_bytes(detector, "detector", feature_names)


def save_detector(detector: Any, path: str | Path, *, feature_names: Any = None) -> Path:
    """Write ``detector`` to an archive at ``path`` and return the path.

    ``feature_names`` (the training columns, in order) is recorded in the manifest; without it the
    detector's ``feature_names_`` attribute is used when it has one.

    Examples
    --------
    >>> save_detector(det, 'aegmm.lantern', feature_names=['duration', 'src_bytes'])  # doctest: +SKIP
    """
    path = Path(path)
    path.write_bytes(_to_bytes(detector, "detector", feature_names))
    return path


def load_detector(source: Source) -> Any:
    """Load a detector from an archive path, bytes or binary file.

    Raises
    ------
    ArchiveError
        When the file is not a valid archive of a registered detector.
    """
    return _from_bytes(_read_source(source), "detector")


def explainer_to_bytes(explainer: Any, *, feature_names: Any = None) -> bytes:
    """The archive of ``explainer`` as bytes."""
    return _to_bytes(explainer, "explainer", feature_names)


def save_explainer(explainer: Any, path: str | Path, *, feature_names: Any = None) -> Path:
    """Write ``explainer`` to an archive at ``path`` and return the path."""
    path = Path(path)
    path.write_bytes(_to_bytes(explainer, "explainer", feature_names))
    return path


def load_explainer(source: Source) -> Any:
    """Load an explainer from an archive path, bytes or binary file."""
    return _from_bytes(_read_source(source), "explainer")
