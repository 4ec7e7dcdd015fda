"""Predicates and conditional sampling for tabular anchors.

An anchor is a set of predicates on the features of the instance ``x`` being explained:

- ``feature <= b`` or ``feature > b`` for a numerical feature, one per boundary ``b`` between the
  bins cut at the training percentiles (the side of ``b`` that ``x`` lies on);
- ``feature = v`` for a categorical feature;
- ``feature is missing`` where ``x`` has a missing (NaN) value.

The precision of an anchor ``A`` is the probability that the model predicts ``x``'s class for a
row ``z`` drawn from the data given that ``z`` satisfies ``A``; its coverage is the share of rows
that satisfy ``A``.

The sampler keeps the training data as an integer code per feature (the bin of a numerical
value, the index of a categorical value, ``-1`` when missing) and, for the instance being
explained, an ``(n_rows, n_predicates)`` boolean matrix ``satisfied_``: which training row
satisfies which predicate. Every question the search asks (which rows satisfy an anchor, its
coverage, which earlier draws can be reused for a longer anchor) is a boolean index into it.

Three ways of drawing ``z`` given ``A`` (``sampling``):

``'auto'`` (default)
    Real rows first, then perturbed ones: ``z`` is drawn as in ``'rows'`` while the anchor has
    training rows not drawn yet, and as in ``'perturb'`` once all of them have been drawn. An
    anchor held by many rows is judged on real rows only (honest precision, cached predictions);
    one held by few rows, which ``'rows'`` could never certify, gets as many samples as the
    bandit asks for, as in the reference. Its estimate then mixes its real rows with perturbed
    ones, so it must hold on both.
``'rows'``
    ``z`` is a training row that satisfies ``A``, drawn uniformly without replacement: the
    empirical conditional distribution, so the estimated precision is the precision on real rows.
    Each :class:`Arm` keeps the rows of its anchor in one random order and draws a prefix of it;
    the rows of a longer anchor are the rows of its parent's order that satisfy the new
    predicate, so the parent's draws that qualify are reused as draws of the child. The
    predictor's labels of training rows are cached, so each row is predicted at most once per
    fit. Once every row of an anchor has been drawn its training precision is exact, and the
    confidence bound stops at that many rows: an anchor backed by few rows cannot be certified.
``'perturb'``
    The reference's scheme: the features that ``A`` constrains come from one training row that
    satisfies ``A`` and the rest of ``z`` from another random training row. It yields an
    unlimited number of distinct samples (useful on very small data) but breaks the
    correlation between constrained and free features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from engine.errors import PredictorCallError, PredictorReturnTypeError

#: Code of a missing (NaN) value.
MISSING = -1
#: Code of a categorical value never seen in the training data.
UNSEEN = -2

SAMPLING_MODES = ("auto", "rows", "perturb")


def labels_from_output(output, n_rows: int) -> np.ndarray:
    """Turn a predictor's output into one integer class label per row.

    - ``(n, C)`` with ``C >= 2``: class scores or probabilities; the label is the argmax.
    - ``(n, 1)`` or ``(n,)``: class labels when every value is a whole number, otherwise the
      probability of class 1 (a sigmoid output), labelled ``1`` above 0.5. (The reference takes
      the argmax of a single column, which is always 0, so every sample "agrees".)

    Examples
    --------
    >>> labels_from_output(np.array([[0.2], [0.9]]), 2)
    array([0, 1])
    >>> labels_from_output(np.array([[0.1, 0.7, 0.2]]), 1)
    array([1])
    """
    if not isinstance(output, np.ndarray):
        raise PredictorReturnTypeError(
            f"the predictor returned {type(output).__name__}; it must return a numpy array "
            "(class probabilities of shape (n, n_classes), or labels of shape (n,)). "
            "Wrap it, e.g. lambda x: np.asarray(model(x))."
        )
    if output.ndim == 2 and output.shape[1] == 1:
        output = output[:, 0]
    if output.ndim not in (1, 2) or output.shape[0] != n_rows:
        raise PredictorReturnTypeError(
            f"the predictor returned an array of shape {output.shape} for {n_rows} row(s); expected "
            f"({n_rows},) labels or ({n_rows}, n_classes) probabilities."
        )
    if output.dtype.kind not in "biuf":
        raise PredictorReturnTypeError(
            f"the predictor returned an array of dtype {output.dtype}; return numeric class indices "
            "or probabilities (e.g. predict_proba), not class names."
        )
    if output.ndim == 2:
        return np.argmax(output, axis=1).astype(np.int64)
    values = output.astype(np.float64)
    if not np.isfinite(values).all():
        raise PredictorReturnTypeError("the predictor returned NaN or inf; it must return finite outputs.")
    if np.all(values == np.round(values)):
        return values.astype(np.int64)
    if values.min() >= 0.0 and values.max() <= 1.0:
        return (values > 0.5).astype(np.int64)
    raise PredictorReturnTypeError(
        "the predictor returned a single column of values that are neither whole-number labels nor "
        "probabilities in [0, 1] (logits?); apply a sigmoid or return labels."
    )


def call_predictor(predictor: Callable, X: np.ndarray, dtype) -> np.ndarray:
    """Call ``predictor`` on ``X`` cast to ``dtype`` and return integer labels.

    Raises :class:`~engine.errors.PredictorCallError` when the call fails and
    :class:`~engine.errors.PredictorReturnTypeError` when the output is unusable.
    """
    batch = np.ascontiguousarray(X, dtype=dtype)
    try:
        output = predictor(batch)
    except Exception as exc:  # the user's code: anything can go wrong in it
        raise PredictorCallError(
            f"calling the predictor on an array of shape {batch.shape} and dtype {batch.dtype} failed "
            f"({type(exc).__name__}: {exc}). It must take a 2-D numpy array with one row per instance "
            "and return one prediction per row."
        ) from exc
    return labels_from_output(output, batch.shape[0])


def percentile_boundaries(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Sorted unique bin boundaries of one numerical column at the given percentiles.

    NaN values are left out (they form their own "missing" bin); a boundary at or above the
    largest value is dropped, since no row could lie above it.

    Examples
    --------
    >>> percentile_boundaries(np.array([1., 2., 3., 4., np.nan]), (25, 50, 75))
    array([1.75, 2.5 , 3.25])
    >>> percentile_boundaries(np.array([0., 0., 0., 0., 5.]), (25, 50, 75))
    array([0.])
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    bounds = np.unique(np.percentile(finite, percentiles))
    return bounds[bounds < finite.max()]


@dataclass(frozen=True)
class Predicate:
    """One condition of an anchor, on column ``feature`` of the ordinal layout.

    ``op`` is ``'<='`` or ``'>'`` (``value`` is the bin boundary, ``code`` its index),
    ``'='`` (``value`` the category code, ``code`` its index) or ``'missing'``.
    """

    feature: int
    op: str
    value: float
    code: int
    text: str

    def holds_on_codes(self, codes: np.ndarray) -> np.ndarray:
        """Where the predicate holds, given one column of sampler codes."""
        if self.op == "<=":
            return (codes >= 0) & (codes <= self.code)
        if self.op == ">":
            return codes > self.code
        if self.op == "=":
            return codes == self.code
        return codes == MISSING

    def holds_on_values(self, values: np.ndarray) -> np.ndarray:
        """Where the predicate holds, given one column of raw ordinal values (NaN = missing)."""
        with np.errstate(invalid="ignore"):
            if self.op == "<=":
                return values <= self.value
            if self.op == ">":
                return values > self.value
            if self.op == "=":
                return values == self.value
        return np.isnan(values)

    def to_dict(self) -> dict:
        return {"feature": self.feature, "op": self.op, "value": float(self.value), "text": self.text}

    @classmethod
    def from_dict(cls, d: dict) -> "Predicate":
        return cls(int(d["feature"]), str(d["op"]), float(d["value"]), -1, str(d.get("text", "")))


@dataclass(eq=False)
class Arm:
    """A candidate anchor and what has been learned about it by sampling.

    ``rows`` holds the training rows that satisfy the anchor in a uniformly random order; in
    ``'rows'`` and ``'auto'`` sampling the first ``n_rows`` of them are the rows drawn so far
    (``n`` counts every sample: rows and, in ``'auto'``, perturbed samples after them).
    """

    predicates: tuple[int, ...]  # predicate ids, sorted
    added: tuple[int, ...]  # predicate ids in the order the search added them
    rows: np.ndarray
    coverage_mask: np.ndarray
    parent: "Arm | None"
    finite: bool
    n: int = 0
    n_agree: int = 0
    n_rows: int = 0
    examples_true: list = field(default_factory=list)
    examples_false: list = field(default_factory=list)
    # 'perturb' sampling: samples already predicted but not yet used, in draw order.
    buffer: np.ndarray | None = None
    buffer_agree: np.ndarray | None = None

    @property
    def support(self) -> int:
        """Number of training rows that satisfy the anchor."""
        return int(self.rows.size)

    @property
    def coverage(self) -> float:
        return float(self.coverage_mask.mean()) if self.coverage_mask.size else 0.0

    @property
    def precision(self) -> float:
        return self.n_agree / self.n if self.n else 0.0

    @property
    def exhausted(self) -> bool:
        """True once every training row of the anchor has been drawn (``'rows'`` sampling)."""
        return self.finite and self.n_rows >= self.support


class TabularSampler:
    """Draws rows that satisfy an anchor and compares their predictions with the instance's.

    Parameters
    ----------
    predictor : callable
        Model function on rows in the predictor's input layout (one-hot groups when the
        explainer has ``ohe=True``); its output is read by :func:`labels_from_output`.
    disc_perc : tuple of float
        Percentiles at which numerical features are cut into bins.
    numerical_features, categorical_features : list of int
        Column ids (ordinal layout).
    feature_names : list of str
        One name per ordinal column.
    feature_values : dict
        Categorical column id -> sorted array of its category codes.
    n_covered_ex : int
        Samples kept per anchor where the prediction agrees / disagrees with the instance's.
    seed : int, optional
        Seed of the sampler's ``numpy.random.Generator`` (the explainer replaces it per row).
    category_labels : dict, optional
        Categorical column id -> display name of each code in ``feature_values``.
    input_columns : dict, optional
        Ordinal column id -> the predictor-input columns it occupies; identity by default.
    sampling : {'auto', 'rows', 'perturb'}
        How samples are drawn (see the module docstring).
    dtype : numpy dtype
        Dtype of the arrays passed to ``predictor``.

    Examples
    --------
    >>> X = np.array([[0.], [1.], [2.], [3.]])
    >>> s = TabularSampler(lambda x: (x[:, 0] > 1.5).astype(int), (50,), [0], [], ['a'], {})
    >>> _ = s.deferred_init(X, X)
    >>> s.set_instance_label(np.array([3.]))
    1
    >>> _ = s.build_lookups(np.array([3.]))
    >>> [p.text for p in s.predicates_]
    ['a > 1.50']
    """

    def __init__(
        self,
        predictor: Callable,
        disc_perc: Sequence[float],
        numerical_features: list[int],
        categorical_features: list[int],
        feature_names: list[str],
        feature_values: dict,
        n_covered_ex: int = 10,
        seed: int | None = None,
        *,
        category_labels: dict | None = None,
        input_columns: dict | None = None,
        sampling: str = "auto",
        dtype=np.float32,
    ):
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}.")
        self.predictor = predictor
        self.disc_perc = tuple(disc_perc)
        self.numerical_features = list(numerical_features)
        self.categorical_features = list(categorical_features)
        self.feature_names = list(feature_names)
        self.feature_values = {j: np.asarray(v, dtype=np.float64) for j, v in feature_values.items()}
        self.category_labels = category_labels or {
            j: [f"{c:g}" for c in v] for j, v in self.feature_values.items()
        }
        n_features = len(self.feature_names)
        self.input_columns = input_columns or {j: np.array([j]) for j in range(n_features)}
        self.n_covered_ex = n_covered_ex
        self.sampling = sampling
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.instance_label = None
        self._pending_instance = None
        self.reset_counters()

    # ------------------------------------------------------------------ training data
    def deferred_init(self, train_data: np.ndarray, d_train_data: np.ndarray) -> "TabularSampler":
        """Store the training rows and compute bin boundaries and codes.

        Parameters
        ----------
        train_data : numpy.ndarray
            Training rows in the predictor's input layout.
        d_train_data : numpy.ndarray
            The same rows in the ordinal layout (one column per feature, NaN = missing).
        """
        # Kept in float64 (cast to ``dtype`` only for the predictor) so that samples and
        # examples satisfy the boundaries exactly as the training values do.
        self.inputs_ = np.ascontiguousarray(train_data, dtype=np.float64)
        ordinal = np.asarray(d_train_data, dtype=np.float64)
        self.boundaries_ = {j: percentile_boundaries(ordinal[:, j], self.disc_perc) for j in self.numerical_features}
        self.codes_ = self.encode(ordinal)
        self.n_rows_ = ordinal.shape[0]
        # Labels the predictor gave to training rows ('rows' sampling draws only training rows).
        self._labels = np.zeros(self.n_rows_, dtype=np.int64)
        self._known = np.zeros(self.n_rows_, dtype=bool)
        return self

    def encode(self, ordinal: np.ndarray) -> np.ndarray:
        """Integer codes of rows in the ordinal layout: bins, category indices, ``MISSING``, ``UNSEEN``."""
        ordinal = np.atleast_2d(np.asarray(ordinal, dtype=np.float64))
        codes = np.empty(ordinal.shape, dtype=np.int32)
        for j in range(ordinal.shape[1]):
            column = ordinal[:, j]
            missing = np.isnan(column)
            if j in self.boundaries_:
                code = np.searchsorted(self.boundaries_[j], column, side="left")
            else:
                values = self.feature_values[j]
                idx = np.searchsorted(values, column)
                found = idx < values.size
                found[found] = values[idx[found]] == column[found]
                code = np.where(found, idx, UNSEEN)
            codes[:, j] = np.where(missing, MISSING, code)
        return codes

    # ------------------------------------------------------------------ the instance
    def set_instance_label(self, X: np.ndarray) -> int:
        """Predict the label of the instance ``X`` (predictor-input layout) and keep it."""
        self.instance_label = int(call_predictor(self.predictor, np.atleast_2d(X), self.dtype)[0])
        self._pending_instance = None
        return self.instance_label

    def set_instance(self, X: np.ndarray, label: int | None = None) -> None:
        """Explain ``X`` next; without ``label``, predict it together with the first samples (one call fewer)."""
        self.instance_label = None if label is None else int(label)
        self._pending_instance = None if label is not None else np.asarray(X, dtype=np.float64).reshape(1, -1)

    def build_lookups(self, X: np.ndarray) -> list[dict]:
        """Build the candidate predicates of instance ``X`` (ordinal layout) and ``satisfied_``.

        Predicates that no training row satisfies (e.g. an unseen category) or that every row
        satisfies are left out: they can never make a useful anchor.

        Returns
        -------
        list of dict
            ``[cat_lookup, ord_lookup, enc2feat_idx]`` keyed by predicate id: the category code
            of a categorical predicate, the allowed bins of a numerical one, and the feature
            column of every predicate.
        """
        codes = self.encode(np.asarray(X, dtype=np.float64).reshape(1, -1))[0]
        candidates: list[Predicate] = []
        for j, name in enumerate(self.feature_names):
            code = int(codes[j])
            if code == MISSING:
                candidates.append(Predicate(j, "missing", float("nan"), MISSING, f"{name} is missing"))
            elif j in self.boundaries_:
                for k, bound in enumerate(self.boundaries_[j]):
                    op = "<=" if code <= k else ">"
                    candidates.append(Predicate(j, op, float(bound), k, f"{name} {op} {bound:.2f}"))
            elif code != UNSEEN:
                value = self.feature_values[j][code]
                label = self.category_labels[j][code]
                candidates.append(Predicate(j, "=", float(value), code, f"{name} = {label}"))
        if candidates:
            sat = np.stack([p.holds_on_codes(self.codes_[:, p.feature]) for p in candidates], axis=1)
        else:
            sat = np.zeros((self.n_rows_, 0), dtype=bool)
        support = sat.sum(axis=0)
        keep = (support > 0) & (support < self.n_rows_)
        self.predicates_ = [p for p, k in zip(candidates, keep) if k]
        self.satisfied_ = np.ascontiguousarray(sat[:, keep])
        self.coverage_satisfied_ = self.satisfied_
        n_bins = {j: b.size + 1 for j, b in self.boundaries_.items()}
        cat_lookup, ord_lookup, enc2feat_idx = {}, {}, {}
        for pid, p in enumerate(self.predicates_):
            enc2feat_idx[pid] = p.feature
            if p.op == "=":
                cat_lookup[pid] = p.value
            elif p.op == "<=":
                ord_lookup[pid] = set(range(p.code + 1))
            elif p.op == ">":
                ord_lookup[pid] = set(range(p.code + 1, n_bins[p.feature]))
        return [cat_lookup, ord_lookup, enc2feat_idx]

    def set_coverage_rows(self, coverage_samples: int) -> np.ndarray:
        """Pick the training rows on which coverage is estimated (all of them if there are few)."""
        if coverage_samples >= self.n_rows_:
            rows = np.arange(self.n_rows_)
        else:
            rows = np.sort(self.rng.choice(self.n_rows_, size=coverage_samples, replace=False))
        self.coverage_rows_ = rows
        self.coverage_satisfied_ = self.satisfied_[rows]
        return rows

    def forget_predictions(self) -> None:
        """Drop the cached labels of training rows (after the predictor changed)."""
        self._known[:] = False

    def reset_counters(self) -> None:
        """Zero the per-explanation counters of samples and predictor calls."""
        self.n_samples = 0
        self.n_predictor_calls = 0
        self.n_predicted_rows = 0

    # ------------------------------------------------------------------ arms
    def root(self) -> Arm:
        """The empty anchor: every training row, in a fresh random order."""
        rows = self.rng.permutation(self.n_rows_)
        mask = np.ones(self.coverage_satisfied_.shape[0], dtype=bool)
        return Arm((), (), rows, mask, None, finite=self.sampling == "rows")

    def extend(self, arm: Arm, pid: int) -> Arm:
        """The anchor of ``arm`` with predicate ``pid`` added, reusing ``arm``'s qualifying draws."""
        keep = self.satisfied_[arm.rows, pid]
        child = Arm(
            predicates=tuple(sorted(arm.predicates + (pid,))),
            added=arm.added + (pid,),
            rows=arm.rows[keep],
            coverage_mask=arm.coverage_mask & self.coverage_satisfied_[:, pid],
            parent=arm,
            finite=arm.finite,
        )
        if self.sampling != "perturb" and arm.n_rows:
            n_reused = int(np.count_nonzero(keep[: arm.n_rows]))
            if n_reused:
                drawn = child.rows[:n_reused]
                self._record(child, drawn, self._labels[drawn] == self.instance_label)
        return child

    def sample(self, requests: Sequence[tuple[Arm, int]], lookahead: int = 0) -> None:
        """Draw ``k`` more samples for each ``(arm, k)``, with one predictor call for them all.

        When a call is needed anyway, ``lookahead`` more samples of each arm are predicted in it
        (a predictor call costs far more than a row) so that the next round of draws is free.
        Samples are used in the order they were drawn, so every estimate is as if each batch
        had been drawn only when needed.
        """
        if self.sampling == "perturb":
            self._sample_perturbed(list(requests), lookahead)
            return
        segments, ahead, perturbed = [], [], []
        for arm, k in requests:
            stop = min(arm.n_rows + k, arm.support)
            segments.append(arm.rows[arm.n_rows : stop])
            ahead.append(arm.rows[stop : stop + lookahead])
            short = k - (stop - arm.n_rows)
            if short > 0 and self.sampling == "auto":
                perturbed.append((arm, short))
        if segments:
            self._ensure_labels(np.concatenate(segments), np.concatenate(ahead))
            for (arm, _), rows in zip(requests, segments):
                self._record(arm, rows, self._labels[rows] == self.instance_label)
        if perturbed:
            self._sample_perturbed(perturbed, lookahead)

    def _sample_perturbed(self, requests: list[tuple[Arm, int]], lookahead: int) -> None:
        """Draw ``k`` perturbed samples for each ``(arm, k)``, predicting ``lookahead`` more of each ahead."""
        short = [(arm, k - (0 if arm.buffer is None else len(arm.buffer))) for arm, k in requests]
        short = [(arm, m + lookahead) for arm, m in short if m > 0]
        if short:
            batches = [self._perturb(arm, m) for arm, m in short]
            labels = self._predict(np.concatenate(batches)) == self.instance_label
            start = 0
            for (arm, _), batch in zip(short, batches):
                agree = labels[start : start + len(batch)]
                start += len(batch)
                if arm.buffer is None:
                    arm.buffer, arm.buffer_agree = batch, agree
                else:
                    arm.buffer = np.concatenate([arm.buffer, batch])
                    arm.buffer_agree = np.concatenate([arm.buffer_agree, agree])
        for arm, k in requests:
            self._record(arm, None, arm.buffer_agree[:k], arm.buffer[:k])
            arm.buffer, arm.buffer_agree = arm.buffer[k:], arm.buffer_agree[k:]

    def _record(self, arm: Arm, rows, agree: np.ndarray, samples: np.ndarray | None = None) -> None:
        n = int(agree.size)
        arm.n += n
        if samples is None:
            arm.n_rows += n
        arm.n_agree += int(np.count_nonzero(agree))
        self.n_samples += n
        for store, mask in ((arm.examples_true, agree), (arm.examples_false, ~agree)):
            room = self.n_covered_ex - sum(len(e) for e in store)
            if room > 0 and mask.any():
                picked = np.flatnonzero(mask)[:room]
                store.append(self.inputs_[rows[picked]] if samples is None else samples[picked])

    def examples(self, arm: Arm) -> dict:
        """Covered samples of ``arm`` where the prediction agrees / disagrees with the instance's."""
        width = self.inputs_.shape[1]

        def stack(parts):
            return np.concatenate(parts) if parts else np.empty((0, width), dtype=self.inputs_.dtype)

        empty = np.empty((0, width), dtype=self.inputs_.dtype)
        return {
            "covered_true": stack(arm.examples_true),
            "covered_false": stack(arm.examples_false),
            "uncovered_true": empty,
            "uncovered_false": empty.copy(),
        }

    # ------------------------------------------------------------------ predictions
    def _predict(self, X: np.ndarray) -> np.ndarray:
        self.n_predictor_calls += 1
        self.n_predicted_rows += len(X)
        pending = self._pending_instance
        if pending is None:
            return call_predictor(self.predictor, X, self.dtype)
        labels = call_predictor(self.predictor, np.concatenate([pending, X]), self.dtype)
        self.instance_label, self._pending_instance = int(labels[0]), None
        return labels[1:]

    def _ensure_labels(self, rows: np.ndarray, ahead: np.ndarray) -> None:
        """Predict (once) the training rows in ``rows`` whose label is not cached yet."""
        if self._known[rows].all() and self.instance_label is not None:
            return
        todo = np.unique(np.concatenate([rows, ahead]))
        todo = todo[~self._known[todo]]
        if todo.size or self.instance_label is None:
            self._labels[todo] = self._predict(self.inputs_[todo])
            self._known[todo] = True

    def _features_of(self, predicates) -> np.ndarray:
        features = sorted({self.predicates_[p].feature for p in predicates})
        if not features:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([self.input_columns[j] for j in features])

    def _perturb(self, arm: Arm, k: int, return_rows: bool = False):
        """``k`` rows whose anchor features come from rows satisfying the anchor, the rest from any row."""
        base = self.rng.integers(self.n_rows_, size=k)
        donors = arm.rows[self.rng.integers(arm.support, size=k)]
        samples = self.inputs_[base].copy()
        cols = self._features_of(arm.predicates)
        samples[:, cols] = self.inputs_[donors][:, cols]
        return (samples, base, donors) if return_rows else samples

    # ------------------------------------------------------------------ reference-style calls
    def get_features_index(self, anchor: tuple) -> np.ndarray:
        """Training rows where every predicate of ``anchor`` (predicate ids) holds."""
        if not anchor:
            return np.arange(self.n_rows_)
        return np.flatnonzero(self.satisfied_[:, list(anchor)].all(axis=1))

    def perturbation(self, anchor: tuple, num_samples: int):
        """Draw ``num_samples`` rows satisfying ``anchor`` (with replacement).

        Returns
        -------
        samples : numpy.ndarray
            Rows in the predictor-input layout.
        d_samples : numpy.ndarray
            Their ``(num_samples, n_predicates)`` boolean matrix of satisfied predicates.
        coverage : float
            Share of the coverage rows that satisfy the anchor.
        """
        rows = self.get_features_index(anchor)
        if rows.size == 0:
            raise ValueError(f"no training row satisfies the anchor {anchor}.")
        arm = Arm(tuple(anchor), tuple(anchor), rows, np.ones(0, dtype=bool), None, finite=False)
        if self.sampling == "rows" or (self.sampling == "auto" and rows.size >= num_samples):
            drawn = rows[self.rng.integers(rows.size, size=num_samples)]
            samples, d_samples = self.inputs_[drawn], self.satisfied_[drawn]
        else:
            samples, base, donors = self._perturb(arm, num_samples, return_rows=True)
            d_samples = self.satisfied_[base].copy()
            constrained = [p for p, pred in enumerate(self.predicates_) if pred.feature in
                           {self.predicates_[q].feature for q in anchor}]
            d_samples[:, constrained] = self.satisfied_[donors][:, constrained]
        cov = self.coverage_satisfied_[:, list(anchor)].all(axis=1).mean() if anchor else 1.0
        return samples, d_samples, float(cov)

    def compare_labels(self, samples: np.ndarray) -> np.ndarray:
        """1 where the predicted label of a sample equals the instance's label, else 0."""
        return (self._predict(samples) == self.instance_label).astype(np.int64)

    def __call__(self, anchor: tuple, num_samples: int, compute_labels: bool = True) -> list:
        """Sample for ``anchor = (position, predicate_ids)`` like the reference sampler.

        Returns ``[covered_true, covered_false, labels, data, coverage, position]`` (``data``:
        the samples' satisfied-predicate matrix as 0/1), or ``[samples]`` when
        ``compute_labels`` is False.
        """
        position, predicates = anchor
        samples, d_samples, coverage = self.perturbation(tuple(predicates), num_samples)
        if not compute_labels:
            return [samples]
        labels = self.compare_labels(samples)
        agree = labels.astype(bool)
        return [
            samples[agree][: self.n_covered_ex],
            samples[~agree][: self.n_covered_ex],
            labels,
            d_samples.astype(np.int64),
            coverage,
            position,
        ]
