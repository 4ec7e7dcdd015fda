"""The explanation pages' jobs: CEM's pertinent negatives and positives, the anchors forest and its anchors.

Each job is ``fn(request, progress) -> answer`` (see :mod:`jobs`). A request carries everything the job needs
(the classifier as a :class:`jobs.models.Network` spec and weights, or as the uploaded model's file bytes in a
:class:`jobs.models.ModelFile`; the data; the settings),
so the job runs the same in a thread of the server or in another process.

Reuse within one process
------------------------
Compiling CEM's search (XLA, a few seconds) and indexing the training rows for the anchor sampler are the slow
first steps of an explanation, and they depend only on the model and the data. This module keeps them in small
bounded in-process caches (least recently used first out), keyed by a SHA-256 digest of the model's bytes (or
the forest's recipe and data) and the settings that shape them. With the thread backend every later job of the
same session (and of any session with the same model and data) reuses them; a job in another process finds the
cache empty and builds them again from its request, with the same result.

The anchors forest is never pickled or sent anywhere: it lives in this process's cache and is refitted from its
request (:class:`ForestRequest`, a seeded recipe) wherever a job needs it and does not find it.

Examples
--------
>>> request = CEMRequest(classifier, X_train, x, (lo, hi), ["PN"], CEMSettings())  # doctest: +SKIP
>>> answer = explain_cem(request, progress)  # doctest: +SKIP
>>> answer.explanations["PN"].PN  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from jobs.base import Progress
from jobs.models import PREDICT_BATCH_ROWS, ModelFile, Network, predict_in_batches, teacher_network

CEM_SETTINGS = ("kappa", "beta", "gamma", "c_init", "c_steps", "max_iterations", "learning_rate_init")
_CACHE_SIZE = 8


# ------------------------------------------------------------------------------------------------ caches


class _Cache:
    """A bounded least-recently-used map shared by the job threads of this process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: str, make: Callable[[], Any]) -> tuple[Any, bool]:
        """The value under ``key`` (made now, outside the lock, when missing) and whether it was made now."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], False
        value = make()
        with self._lock:
            if key in self._items:  # another job made it meanwhile: use one copy
                self._items.move_to_end(key)
                return self._items[key], False
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value, True

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def values(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _digest(*parts: Any) -> str:
    """SHA-256 of numpy arrays, bytes and JSON-able values, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            h.update(bytes(part))
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ models


def network_digest(network: Network) -> str:
    """SHA-256 of a network's spec and weights."""
    return _digest(network.spec, *(network.weights[k] for k in sorted(network.weights)))


def file_digest(model: ModelFile) -> str:
    """SHA-256 of an uploaded model's bytes and kind."""
    return _digest(model.data, model.kind)


_PREDICTORS = _Cache(_CACHE_SIZE)


def load_model_file(model: ModelFile):
    """The uploaded model's predictor (loaded once per process and file)."""
    return _PREDICTORS.get_or_make(file_digest(model), model.load)[0]


@dataclass
class PredictRequest:
    """Rows for an uploaded model (in the table's units)."""

    model: ModelFile
    X: np.ndarray
    batch_rows: int = PREDICT_BATCH_ROWS


@dataclass
class PredictAnswer:
    proba: np.ndarray


def predict(request: PredictRequest, progress: Progress) -> PredictAnswer:
    """Class probabilities of the rows under an uploaded model, in bounded batches."""
    progress.set_stage("predicting the test rows with your model", 0.0)
    proba = predict_in_batches(load_model_file(request.model), request.X, request.batch_rows)
    progress.set_stage("your model is ready", 1.0)
    return PredictAnswer(proba)


# ------------------------------------------------------------------------------------------------ CEM


@dataclass
class CEMClassifier:
    """The classifier CEM explains, in the page's model units.

    Either a network trained here (``network``) or an uploaded model (``own``) that reads the table's units
    ``x * scale + offset``: a Keras one gets the unit change as a layer (exact gradients), any other is called
    as a black box.
    """

    network: Network | None = None
    own: ModelFile | None = None
    offset: np.ndarray | None = None
    scale: np.ndarray | None = None

    def digest(self) -> str:
        if self.network is not None:
            return network_digest(self.network)
        return _digest(file_digest(self.own), np.asarray(self.offset), np.asarray(self.scale))

    def build(self):
        """A Keras model (white box) or a function of numpy rows (black box)."""
        if self.network is not None:
            return self.network.build()
        predictor = load_model_file(self.own)
        if getattr(predictor, "white_box", False):
            return teacher_network(predictor, self.offset, self.scale)
        offset, scale = np.asarray(self.offset, np.float64), np.asarray(self.scale, np.float64)
        return lambda X: predictor(np.asarray(X, dtype=np.float64) * scale + offset)


@dataclass
class CEMSettings:
    """The search's settings (:class:`engine.explainers.CEM` arguments) and the no-information value's kind."""

    kappa: float = 0.0
    beta: float = 0.1
    gamma: float = 0.0
    c_init: float = 10.0
    c_steps: int = 5
    max_iterations: int = 1000
    learning_rate_init: float = 1e-2
    no_info: str = "median"  # 'median' / 'mean' of the training rows, or 'background' (0)


@dataclass
class CEMRequest:
    """Explain the rows ``x`` (model units) as PN and / or PP."""

    classifier: CEMClassifier
    X_train: np.ndarray  # model units: the no-information value's median / mean
    x: np.ndarray  # shape (1, n_features)
    feature_range: tuple  # (low, high): floats or one value per feature
    modes: list[str]
    settings: CEMSettings = field(default_factory=CEMSettings)
    autoencoder: Network | None = None  # used when settings.gamma > 0


@dataclass
class CEMAnswer:
    explanations: dict  # mode -> engine.explanation.Explanation


@dataclass
class _Locked:
    """A cached explainer and the lock its jobs take (its settings are attributes, so one search at a time)."""

    value: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_CEMS = _Cache(_CACHE_SIZE)


def _cem_key(request: CEMRequest, mode: str, use_ae: bool) -> str:
    no_info = request.settings.no_info
    return _digest("cem", request.classifier.digest(), mode, no_info,
                   network_digest(request.autoencoder) if use_ae else None,
                   tuple(np.shape(request.x)[1:]), *(np.asarray(v, np.float64) for v in request.feature_range),
                   None if no_info == "background" else np.asarray(request.X_train))


def _compiled_cem(request: CEMRequest, mode: str) -> tuple[_Locked, bool]:
    """The cached CEM for this model, mode, no-information value and autoencoder; True when built now."""
    from engine.explainers import CEM

    use_ae = request.autoencoder is not None and request.settings.gamma > 0

    def make() -> _Locked:
        no_info = request.settings.no_info
        cem = CEM(request.classifier.build(), mode=mode, shape=(1,) + tuple(np.shape(request.x)[1:]),
                  feature_range=request.feature_range,
                  ae_model=request.autoencoder.build() if use_ae else None,
                  no_info_val=0.0 if no_info == "background" else None)
        if no_info != "background":
            cem.fit(request.X_train, no_info_type=no_info)
        return _Locked(cem)

    return _CEMS.get_or_make(_cem_key(request, mode, use_ae), make)


def cached_cems() -> list:
    """The CEMs this process keeps (most recently used last); for tests and diagnostics."""
    return [entry.value for entry in _CEMS.values()]


def explain_cem(request: CEMRequest, progress: Progress) -> CEMAnswer:
    """Search a pertinent negative and / or positive of ``request.x``, one mode after the other.

    The compiled search is reused from this process's cache when the same model, mode, no-information value and
    autoencoder were explained before (see the module docstring).
    """
    settings = request.settings
    total = len(request.modes) * settings.c_steps
    explanations = {}
    for i, mode in enumerate(request.modes):
        entry, fresh = _compiled_cem(request, mode)
        done = i * settings.c_steps
        progress.set_stage(f"{mode}: waiting for the explainer (it is being compiled)" if entry.lock.locked()
                           else f"{mode}: preparing", done / total)
        with entry.lock:  # one search at a time per compiled CEM (its settings are attributes)
            cem = entry.value
            for name in CEM_SETTINGS:
                setattr(cem, name, getattr(settings, name))
            compiling = cem.is_white_box and not cem._compiled
            progress.set_stage(f"{mode}: compiling the optimisation loop (a few seconds the first time)"
                               if compiling else f"{mode}: searching", done / total)

            def report(event: dict, done=done, mode=mode) -> None:
                status = "found" if event["found"] else "none found yet"
                progress.report({"fraction": (done + event["c_step"]) / total,
                                 "message": f"{mode}: c step {event['c_step']}/{event['c_steps']} · {status}"})

            explanations[mode] = cem.explain(np.asarray(request.x, dtype=np.float32), progress=report,
                                             cancel=progress.cancel)
    found = [f"{mode} {'found' if bool(exp.found[0]) else 'not found'}" for mode, exp in explanations.items()]
    progress.set_stage(", ".join(found), 1.0)
    return CEMAnswer(explanations)


@dataclass
class WarmUpAnswer:
    compiled: list[str]  # the modes whose search was compiled now (empty: cached already, or a black box)


def warm_up_cem(request: CEMRequest, progress: Progress) -> WarmUpAnswer:
    """Compile the searches ``request.modes`` with ``request.settings`` on ``request.x``, into this process's cache.

    Run as its own job as soon as a classifier is ready, so that the first explanation with the page's default
    settings does not wait for XLA (iterations and c steps are inputs of the compiled loop: a short search
    compiles the same program). Black-box models have nothing to compile. In another process this only costs
    time: the cache it fills is that process's.
    """
    compiled = []
    for i, mode in enumerate(request.modes):
        progress.set_stage(f"preparing the {mode} search", i / len(request.modes))
        entry, _ = _compiled_cem(request, mode)
        with entry.lock:
            if entry.value.is_white_box and not entry.value._compiled:
                entry.value.warm_up(np.asarray(request.x, dtype=np.float32))
                compiled.append(mode)
    progress.set_stage("the explainer is ready", 1.0)
    return WarmUpAnswer(compiled)


# ------------------------------------------------------------------------------------------------ anchors


@dataclass
class ForestRequest:
    """A seeded random forest's recipe: the same request grows the same forest anywhere."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    n_trees: int = 50
    max_depth: int = 12
    seed: int = 0
    time_budget: float | None = None  # the budget of the job that first grew it (a refit grows as many trees)

    def digest(self) -> str:
        return _digest("forest", self.X_train, self.y_train, self.n_trees, self.max_depth, self.seed)


@dataclass
class ForestAnswer:
    test_proba: np.ndarray
    classes: np.ndarray  # the label code of each column of test_proba (a forest knows the classes it saw)
    n_built: int  # trees grown (fewer than asked when the time budget ran out)


_FORESTS = _Cache(_CACHE_SIZE)


def _forest(request: ForestRequest, progress: Progress | None):
    from engine.tabular import train_forest as grow

    def make():
        report = None
        if progress is not None:
            def report(e):
                progress.report({**e, "message": f"{e['trees_built']}/{e['n_trees']} trees"})
        return grow(request.X_train, request.y_train, n_trees=request.n_trees, max_depth=request.max_depth,
                    seed=request.seed, progress=report, cancel=None if progress is None else progress.cancel,
                    time_budget=request.time_budget if progress is None else progress.time_budget)

    return _FORESTS.get_or_make(request.digest(), make)[0]


def train_forest(request: ForestRequest, progress: Progress) -> ForestAnswer:
    """Grow the forest (kept in this process's cache, never sent), predict the test rows."""
    progress.set_stage(f"growing {request.n_trees} trees", 0.0)
    forest = _forest(request, progress)
    progress.set_stage("predicting the test split", 1.0)
    test_proba = forest.predict_proba(request.X_test)
    built = len(forest.estimators_)
    progress.set_stage(f"{built} trees" + (" (stopped at the time budget)" if built < request.n_trees else ""), 1.0)
    return ForestAnswer(test_proba, np.asarray(forest.classes_), built)


@dataclass
class AnchorModel:
    """The classifier an anchor explains: a forest's recipe, or an uploaded model's file."""

    forest: ForestRequest | None = None
    own: ModelFile | None = None

    def digest(self) -> str:
        return self.forest.digest() if self.forest is not None else file_digest(self.own)

    def predictor(self, progress: Progress | None = None) -> Callable[[np.ndarray], np.ndarray]:
        if self.forest is not None:
            return _forest(self.forest, progress).predict_proba
        return load_model_file(self.own)


@dataclass
class AnchorSearch:
    """:meth:`engine.explainers.AnchorTabular.explain` settings."""

    threshold: float = 0.95
    beam_size: int = 1
    coverage_samples: int = 10_000
    max_anchor_size: int | None = None


@dataclass
class AnchorRequest:
    """Explain one row; the held-out precision is measured on ``X_test`` with the model's ``test_proba``."""

    model: AnchorModel
    feature_names: list[str]
    categorical_names: dict  # feature index -> category labels (the codes' names)
    X_train: np.ndarray
    X_test: np.ndarray
    test_proba: np.ndarray
    position: int  # the row to explain, in X_test
    search: AnchorSearch = field(default_factory=AnchorSearch)
    seed: int = 0


@dataclass
class AnchorAnswer:
    explanation: Any  # engine.explanation.Explanation
    held_out: dict  # precision / coverage / n_covered / n_agree on the test rows
    different_columns: list[np.ndarray]  # per step: the model's column for each covered_false example


_EXPLAINERS = _Cache(_CACHE_SIZE)


def _anchor_explainer(request: AnchorRequest, progress: Progress):
    from engine.explainers import AnchorTabular

    key = _digest("anchors", request.model.digest(), request.feature_names,
                  {str(k): list(v) for k, v in request.categorical_names.items()}, np.asarray(request.X_train))

    def make():
        predictor = request.model.predictor(progress)
        progress.set_stage("indexing the training rows for the explainer", 0.0)
        explainer = AnchorTabular(predictor, request.feature_names, request.categorical_names, seed=0)
        return _Locked(explainer.fit(request.X_train))

    return _EXPLAINERS.get_or_make(key, make)[0]


def explain_anchor(request: AnchorRequest, progress: Progress) -> AnchorAnswer:
    """Search an anchor for one test row, then measure it on the test rows.

    The forest and the explainer's index of the training rows are reused from this process's cache when they
    are there, else rebuilt from the request (see the module docstring).
    """
    entry = _anchor_explainer(request, progress)
    most_rules = request.search.max_anchor_size or len(request.feature_names)

    def report(event: dict) -> None:
        rule = " AND ".join(event["anchor"]) or "(no rule)"
        progress.report({**event, "fraction": min(event["size"] / most_rules, 1.0),
                         "message": f"{event['size']} rule(s): {rule[:120]} · precision {event['precision']:.3f}"})

    with entry.lock:  # its seed is an attribute
        explainer = entry.value
        explainer.seed = request.seed  # every explanation draws from a fresh generator seeded with this
        progress.set_stage("sampling rows that satisfy candidate rules", 0.0)
        explanation = explainer.explain(request.X_test[request.position], **vars(request.search), progress=report,
                                        cancel=progress.cancel)
        progress.set_stage("checking the anchor on the test split", 1.0)
        held_out = explainer.anchor_precision_on(request.X_test, explanation, predictions=request.test_proba)
        different = []
        for examples in explanation.raw["examples"]:
            rows = examples["covered_false"]
            different.append(np.asarray(explainer.predictor(rows)).argmax(axis=1) if len(rows)
                             else np.zeros(0, dtype=int))
    status = "certified" if explanation.raw["success"] else "not certified"
    progress.set_stage(f"{len(explanation.anchor)} rule(s), precision {explanation.precision:.3f}, {status}", 1.0)
    return AnchorAnswer(explanation, held_out, different)


def prepare_anchor_explainer(request: AnchorRequest, progress: Progress) -> None:
    """Index the training rows for ``request``'s explainer now (in this process's cache)."""
    _anchor_explainer(request, progress)
