"""AnchorTabular: high-precision if-then rules that explain a classifier's prediction on a table row.

An anchor for an instance ``x`` is a conjunction of simple conditions on its features (such as
``Age <= 28.00 AND Marital Status = Separated``) such that rows satisfying it get the same
prediction as ``x`` with probability at least ``threshold`` (its *precision*), while covering
as large a share of the data as possible (its *coverage*). Numerical features are cut into bins
at training percentiles, categorical features are matched by value; the search lives in
:mod:`engine.explainers.anchor_search` and the sampling in :mod:`engine.explainers.anchor_sampler`.

Fixes over the reference implementation:

- ``stop_on_first=True`` ends the search at the first eligible anchor (it was ignored);
- a predictor returning one column (a sigmoid probability) is thresholded at 0.5 instead of
  having its argmax taken (which is always 0);
- one-hot input (``ohe=True``) is validated and samples are real rows in the predictor's own
  layout, and categorical codes need not be ``0..n-1`` (a dict ``{code: name}`` is accepted too);
- NaN in a numerical column no longer breaks discretisation: it gets its own "is missing" bin.

Beyond the reference: several rows explained in one call, the per-step precision / coverage and
training support of each anchor, :meth:`AnchorTabular.anchor_precision_on` to check an
anchor's precision on held-out rows, and :meth:`AnchorTabular.readable_rows` to show example rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np

from engine.base import Explainer, check_is_fitted
from engine.errors import DataError
from engine.explainers.anchor_sampler import (
    SAMPLING_MODES,
    Predicate,
    TabularSampler,
    call_predictor,
    labels_from_output,
)
from engine.explainers.anchor_search import AnchorSearch, SearchSettings
from engine.explanation import Explanation
from engine.validation import as_float_array, check_percentile
from engine.version import __version__

__all__ = ["AnchorTabular"]


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _open_unit(value, name: str, low_open: bool = True, high_open: bool = True) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    ok_low = value > 0 if low_open else value >= 0
    ok_high = value < 1 if high_open else value <= 1
    if not (ok_low and ok_high):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {interval}, got {value}.")
    return value


class AnchorTabular(Explainer):
    """Anchor explanations of a classifier on tabular data.

    Parameters
    ----------
    predictor : callable
        Takes a 2-D numpy array of rows and returns class probabilities ``(n, n_classes)``,
        a single probability column ``(n, 1)`` for class 1, or labels ``(n,)``.
    feature_names : list of str
        One name per feature (per original feature when ``ohe=True``).
    categorical_names : dict, optional
        ``{feature index: category names}``. With ordinal codes the names are indexed by code
        when the codes are ``0..n-1``; otherwise the i-th smallest code takes the i-th name. Give
        ``{code: name}`` instead of a list to say exactly which code is which. With ``ohe=True``
        the list gives the categories of the feature's one-hot columns, in column order.
    dtype : numpy scalar type
        Dtype of the arrays passed to ``predictor``.
    ohe : bool
        Whether the categorical features arrive one-hot encoded. Columns are then laid out in
        ``feature_names`` order, each categorical feature taking ``len(categorical_names[i])``
        consecutive columns.
    seed : int, optional
        Seed of the ``numpy.random.Generator`` used for every explanation: with a seed, the
        same row always gets the same explanation.
    sampling : {'auto', 'rows', 'perturb'}, keyword-only
        How rows satisfying an anchor are drawn. ``'auto'`` (default) draws the anchor's real
        training rows first (predictions cached per training row) and, once all of them are
        drawn, perturbed rows as the reference does, so an anchor held by few training rows can
        still be certified. ``'rows'`` draws real training rows only (an anchor with too few of
        them cannot reach the confidence bound); ``'perturb'`` always takes the anchor's features
        from a row that satisfies it and the rest from another training row, as the reference does.

    Raises
    ------
    PredictorCallError
        If calling ``predictor`` on a row of zeros fails.
    PredictorReturnTypeError
        If ``predictor`` does not return a numeric numpy array of a usable shape.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 2))
    >>> explainer = AnchorTabular(lambda x: (x[:, 0] > 0).astype(int), ['a', 'b'], seed=0).fit(X)
    >>> exp = explainer.explain(np.array([1.5, 0.0]))
    >>> exp.anchor, exp.precision >= 0.95
    (['a > 0.63'], True)
    """

    def __init__(
        self,
        predictor: Callable[[np.ndarray], np.ndarray],
        feature_names: Sequence[str],
        categorical_names: Mapping | None = None,
        dtype=np.float32,
        ohe: bool = False,
        seed: int | None = None,
        *,
        sampling: str = "auto",
    ):
        self._configure(feature_names, categorical_names, dtype, ohe, sampling)
        self.seed = seed
        self.reset_predictor(predictor)

    # Learned state: created by fit (None here, at class level, means "not fitted").
    sampler_: TabularSampler | None = None
    disc_perc_: tuple | None = None

    # ------------------------------------------------------------------ configuration
    def _configure(self, feature_names, categorical_names, dtype, ohe, sampling) -> None:
        """Check and set the parameters that decide the column layout and the sampling."""
        if isinstance(feature_names, str) or not isinstance(feature_names, Sequence) or not feature_names:
            raise ValueError("feature_names must be a non-empty list of strings, one per feature.")
        names = [str(n) for n in feature_names]
        if len(set(names)) != len(names):
            raise ValueError("feature_names contains duplicates; every feature needs its own name.")
        previous = getattr(self, "feature_names", None)
        self.feature_names = names
        try:
            checked = self._check_categorical_names(categorical_names or {}, ohe)
            if sampling not in SAMPLING_MODES:
                raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}.")
        except ValueError:
            if previous is not None:
                self.feature_names = previous
            raise
        self.categorical_names = checked
        self.dtype = dtype
        self.ohe = bool(ohe)
        self.sampling = sampling
        self._layout()

    def set_params(self, **params: Any) -> "AnchorTabular":
        """Set constructor parameters by name and return ``self`` (see :class:`engine.base.ParamsMixin`).

        A new ``predictor`` is checked and keeps the fit (its cached predictions are forgotten);
        any other parameter changes the layout or the sampling, so the explainer must be fitted
        again.

        Examples
        --------
        >>> explainer.set_params(seed=1).fit(X_train)  # doctest: +SKIP
        """
        valid = self._param_names()
        unknown = sorted(name for name in params if name not in valid)
        if unknown:
            raise ValueError(f"AnchorTabular has no parameter(s) {unknown}; valid parameters are {valid}.")
        settings = {name: params.get(name, getattr(self, name))
                    for name in ("feature_names", "categorical_names", "dtype", "ohe", "sampling")}
        if set(params) - {"predictor"}:
            self._configure(**settings)
            self.seed = params.get("seed", self.seed)
            self.sampler_ = self.disc_perc_ = None
        if params:
            self.reset_predictor(params.get("predictor", self._predictor))  # checked against the layout
        return self

    def _check_categorical_names(self, names: Mapping, ohe: bool) -> dict:
        if not isinstance(names, Mapping):
            raise ValueError("categorical_names must be a dict {feature index: list of category names}.")
        checked = {}
        for key, value in names.items():
            is_index = isinstance(key, (int, np.integer)) and not isinstance(key, bool)
            if not is_index or not 0 <= key < len(self.feature_names):
                raise ValueError(
                    f"categorical_names key {key!r} is not a feature index in 0..{len(self.feature_names) - 1}."
                )
            if isinstance(value, Mapping):
                if ohe:
                    raise ValueError("with ohe=True give categorical_names values as lists, in one-hot column order.")
                entries = {float(k): str(v) for k, v in value.items()}
            elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ValueError(f"categorical_names[{key}] must be a list of category names or a dict {{code: name}}.")
            else:
                entries = [str(v) for v in value]
            if not entries:
                raise ValueError(f"categorical_names[{key}] is empty; list the categories of feature {key}.")
            checked[int(key)] = entries
        return checked

    def _layout(self) -> None:
        """Which predictor-input columns each feature occupies."""
        columns, start = {}, 0
        for j in range(len(self.feature_names)):
            width = len(self.categorical_names[j]) if self.ohe and j in self.categorical_names else 1
            columns[j] = np.arange(start, start + width)
            start += width
        self._input_columns = columns
        self.n_inputs = start
        self.categorical_features = sorted(self.categorical_names)
        self.numerical_features = [j for j in range(len(self.feature_names)) if j not in self.categorical_names]

    @property
    def predictor(self) -> Callable:
        return self._predictor

    def reset_predictor(self, predictor: Callable) -> None:
        """Use a new predictor: check it on a row of zeros and forget cached predictions."""
        if not callable(predictor):
            raise TypeError(f"predictor must be callable, got {type(predictor).__name__}.")
        call_predictor(predictor, np.zeros((1, self.n_inputs)), self.dtype)
        self._predictor = predictor
        if self.sampler_ is not None:
            self.sampler_.predictor = predictor
            self.sampler_.forget_predictions()

    @property
    def meta(self) -> dict:
        """Name, type and the constructor / fit parameters."""
        return {
            "name": type(self).__name__,
            "type": ["blackbox"],
            "explanations": ["local"],
            "params": {
                "seed": self.seed,
                "ohe": self.ohe,
                "sampling": self.sampling,
                "disc_perc": list(self.disc_perc_) if self.disc_perc_ is not None else None,
                "feature_names": list(self.feature_names),
                "categorical_names": {
                    str(k): (v if isinstance(v, list) else {f"{c:g}": n for c, n in v.items()})
                    for k, v in self.categorical_names.items()
                },
            },
            "version": __version__,
        }

    # ------------------------------------------------------------------ data layout
    def _check_rows(self, X, name: str, ndim=2) -> np.ndarray:
        return as_float_array(X, name=name, ndim=ndim, n_features=self.n_inputs, allow_nan=True, dtype=np.float64)

    def _to_ordinal(self, X: np.ndarray, name: str = "X") -> np.ndarray:
        """One column per feature; one-hot groups become the index of their hot column (NaN if none)."""
        if not self.ohe:
            return X
        out = np.empty((X.shape[0], len(self.feature_names)))
        for j, cols in self._input_columns.items():
            if j not in self.categorical_names:
                out[:, j] = X[:, cols[0]]
                continue
            block = X[:, cols]
            if not np.isin(block, (0.0, 1.0)).all():
                raise DataError(
                    f"{name}: the one-hot columns {cols[0]}..{cols[-1]} of feature {self.feature_names[j]!r} "
                    "hold values other than 0 and 1; check the column order and categorical_names."
                )
            hot = block.sum(axis=1)
            if (hot > 1).any():
                rows = np.flatnonzero(hot > 1)[:5].tolist()
                raise DataError(
                    f"{name}: rows {rows} have more than one hot column for feature {self.feature_names[j]!r}."
                )
            code = block.argmax(axis=1).astype(np.float64)
            code[hot == 0] = np.nan
            out[:, j] = code
        return out

    def _category_table(self, j: int, column: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Sorted category codes of feature ``j`` and their display names."""
        names = self.categorical_names[j]
        observed = np.unique(column[~np.isnan(column)])
        if self.ohe:
            return np.arange(len(names), dtype=np.float64), list(names)
        if isinstance(names, dict):
            table = dict(names)
            for code in observed:
                table.setdefault(float(code), f"{code:g}")
            codes = np.array(sorted(table))
            return codes, [table[c] for c in codes]
        if np.all(observed == np.round(observed)) and (observed.size == 0 or
                                                        (observed.min() >= 0 and observed.max() < len(names))):
            return np.arange(len(names), dtype=np.float64), list(names)
        if observed.size == len(names):
            return observed, list(names)
        shown = ", ".join(f"{c:g}" for c in observed[:8]) + (" …" if observed.size > 8 else "")
        raise DataError(
            f"categorical feature {self.feature_names[j]!r} has {observed.size} distinct codes ({shown}) that "
            f"are not 0..{len(names) - 1}, but {len(names)} names were given; pass categorical_names[{j}] "
            "as a dict {code: name}."
        )

    # ------------------------------------------------------------------ fit
    def fit(self, train_data, disc_perc: Sequence[float] = (25, 50, 75)) -> "AnchorTabular":
        """Learn the bins of numerical features and index the training rows for sampling.

        Parameters
        ----------
        train_data : array-like of shape (n_rows, n_columns)
            Rows in the predictor's input layout. NaN marks a missing value (numerical features
            get a "missing" bin, categorical ones a "missing" category); inf is rejected.
        disc_perc : tuple of float
            Percentiles in (0, 100) at which numerical features are cut into bins.

        Returns
        -------
        AnchorTabular
            ``self``, fitted.
        """
        try:
            percentiles = tuple(sorted(check_percentile(p, "disc_perc") for p in disc_perc))
        except TypeError:
            raise ValueError(f"disc_perc must be a sequence of percentiles, got {disc_perc!r}.") from None
        if not percentiles:
            raise ValueError("disc_perc needs at least one percentile, e.g. (25, 50, 75).")
        X = self._check_rows(train_data, "train_data")
        ordinal = self._to_ordinal(X, "train_data")
        tables = {j: self._category_table(j, ordinal[:, j]) for j in self.categorical_features}
        sampler = TabularSampler(
            self._predictor,
            percentiles,
            self.numerical_features,
            self.categorical_features,
            self.feature_names,
            {j: codes for j, (codes, _) in tables.items()},
            seed=self.seed,
            category_labels={j: labels for j, (_, labels) in tables.items()},
            input_columns=self._input_columns,
            sampling=self.sampling,
            dtype=self.dtype,
        )
        self.sampler_ = sampler.deferred_init(X, ordinal)
        self.disc_perc_ = percentiles
        return self

    # ------------------------------------------------------------------ explain
    def explain(
        self,
        X,
        threshold: float = 0.95,
        delta: float = 0.1,
        tau: float = 0.15,
        batch_size: int = 100,
        coverage_samples: int = 10000,
        beam_size: int = 1,
        stop_on_first: bool = False,
        max_anchor_size: int | None = None,
        min_samples_start: int = 100,
        n_covered_ex: int = 10,
        binary_cache_size: int = 10000,
        cache_margin: int = 1000,
        verbose: bool = False,
        verbose_every: int = 1,
        *,
        epsilon_stop: float = 0.05,
        progress: Callable[[dict], None] | None = None,
        cancel=None,
    ) -> Explanation | list[Explanation]:
        """Find anchors for one row, or for each of several rows.

        Parameters
        ----------
        X : array-like of shape (n_columns,) or (n_rows, n_columns)
            The instance(s) to explain, in the predictor's input layout.
        threshold : float
            Precision the anchor must reach, with confidence ``1 - delta``.
        delta : float
            Significance level of the confidence bounds.
        tau : float
            Tolerance of the bandit choosing the most precise candidates at each size.
        batch_size : int
            Samples drawn per anchor in each bandit round.
        coverage_samples : int
            Training rows on which coverage is estimated (all rows if there are fewer).
        beam_size : int
            Candidates kept at each anchor size.
        stop_on_first : bool
            Return the first eligible anchor found instead of searching on for more coverage.
        max_anchor_size : int, optional
            Most predicates in an anchor.
        min_samples_start : int
            Samples drawn for every new candidate before the bandit starts.
        n_covered_ex : int
            Example samples kept per step where the prediction agrees / disagrees.
        binary_cache_size, cache_margin : int
            Accepted for compatibility; unused: whether each training row satisfies each
            predicate is computed once per instance as one boolean matrix, so there is no
            sample cache to size.
        verbose : bool
            Print the beam at every ``verbose_every``-th anchor size.
        verbose_every : int
        epsilon_stop : float, keyword-only
            Margin of the certification: an anchor is eligible when its estimated precision is
            at least ``threshold`` and its lower confidence bound above ``threshold - epsilon_stop``.
        progress : callable, keyword-only, optional
            Called after each anchor size with a dict (``row``, ``n_rows``, ``size``, ``anchor``,
            ``precision``, ``coverage``, ``found``, ``n_samples``).
        cancel : engine.training.CancelToken, keyword-only, optional
            Stops the search between sampling rounds (raises ``TrainingCancelled``).

        Returns
        -------
        Explanation or list of Explanation
            One :class:`~engine.explanation.Explanation` for a 1-D ``X`` or a single row, a list of
            them (one per row, in order) for two or more rows. ``data``: ``anchor`` (list of
            readable conditions, one per feature), ``precision``, ``coverage`` and ``raw`` with
            one entry per added predicate in ``feature``, ``step_names``, ``precision``/``mean``,
            ``coverage``, ``precision_lb``, ``n_samples``, ``support`` (training rows that
            satisfy the anchor so far) and ``examples`` (``covered_true`` / ``covered_false``
            samples), plus ``names``, ``predicates``, ``success`` (False when no anchor reached
            the threshold; the candidate with the highest lower confidence bound on its precision
            is returned instead), ``message``,
            ``all_precision``, ``num_preds``, ``prediction``, ``instance``, ``instances`` and
            ``search``.

        Raises
        ------
        NotFittedError
            If :meth:`fit` was not called.
        DataError
            If ``X`` has the wrong number of columns, inf, or malformed one-hot groups.
        PredictorCallError, PredictorReturnTypeError
            If the predictor fails or returns something unusable.
        """
        check_is_fitted(self, "sampler_", hint="call fit(train_data) first")
        settings = SearchSettings(
            threshold=_open_unit(threshold, "threshold", high_open=False),
            delta=_open_unit(delta, "delta"),
            tau=_open_unit(tau, "tau", high_open=False),
            batch_size=_positive_int(batch_size, "batch_size"),
            beam_size=_positive_int(beam_size, "beam_size"),
            stop_on_first=bool(stop_on_first),
            max_anchor_size=None if max_anchor_size is None else _positive_int(max_anchor_size, "max_anchor_size"),
            min_samples_start=_positive_int(min_samples_start, "min_samples_start"),
            epsilon_stop=_open_unit(epsilon_stop, "epsilon_stop", low_open=False),
            verbose=bool(verbose),
            verbose_every=_positive_int(verbose_every, "verbose_every"),
        )
        coverage_samples = _positive_int(coverage_samples, "coverage_samples")
        n_covered_ex = _positive_int(n_covered_ex, "n_covered_ex", minimum=0)
        _positive_int(binary_cache_size, "binary_cache_size")
        _positive_int(cache_margin, "cache_margin", minimum=0)

        X = self._check_rows(X, "X", ndim=(1, 2))
        single = X.ndim == 1 or X.shape[0] == 1
        rows = X.reshape(-1, self.n_inputs)
        ordinal = self._to_ordinal(rows, "X")
        sampler = self.sampler_
        sampler.n_covered_ex = n_covered_ex
        # Several rows: their labels in one call. One row: predicted with the first samples.
        labels = call_predictor(self._predictor, rows, self.dtype) if rows.shape[0] > 1 else [None]
        params = {
            "threshold": settings.threshold, "delta": settings.delta, "tau": settings.tau,
            "batch_size": settings.batch_size, "coverage_samples": coverage_samples,
            "beam_size": settings.beam_size, "stop_on_first": settings.stop_on_first,
            "max_anchor_size": settings.max_anchor_size, "min_samples_start": settings.min_samples_start,
            "n_covered_ex": n_covered_ex, "binary_cache_size": binary_cache_size,
            "cache_margin": cache_margin, "verbose": settings.verbose, "verbose_every": settings.verbose_every,
            "epsilon_stop": settings.epsilon_stop,
        }
        explanations = []
        for i in range(rows.shape[0]):
            # One generator per row from the same seed: a row's explanation does not depend on
            # which other rows were explained with it.
            sampler.rng = np.random.default_rng(self.seed)
            sampler.reset_counters()
            sampler.set_instance(rows[i], labels[i])
            sampler.build_lookups(ordinal[i])
            sampler.set_coverage_rows(coverage_samples)

            def report(event, i=i):
                progress({"row": i, "n_rows": rows.shape[0], **event})

            search = AnchorSearch(sampler, settings, progress=report if progress else None, cancel=cancel)
            result = search.run()
            explanations.append(self._build_explanation(rows[i], search, result, params))
        return explanations[0] if single else explanations

    def _build_explanation(self, x: np.ndarray, search: AnchorSearch, result, params: dict) -> Explanation:
        sampler = self.sampler_
        predicates = sampler.predicates_
        lineage, arm = [], result.best
        while arm is not None and arm.parent is not None:
            lineage.append(arm)
            arm = arm.parent
        lineage.reverse()
        steps = [predicates[a.added[-1]] for a in lineage]
        names = self._merged_names(steps)
        root = result.root
        precision = lineage[-1].precision if lineage else root.precision
        coverage = lineage[-1].coverage if lineage else 1.0
        threshold = search.settings.threshold
        confidence = 1 - search.settings.delta
        if result.success:
            message = f"anchor found: precision {precision:.3f} >= {threshold} with confidence {confidence:.2f}."
        else:
            best = lineage[-1] if lineage else root
            message = (
                f"no anchor reached precision {threshold} with confidence {confidence:.2f}; "
                f"returning the surest candidate (precision {precision:.3f} on {best.n} samples from "
                f"{best.support} matching training rows). Lower the threshold, use more training data or "
                "finer disc_perc."
            )
        raw = {
            "feature": [p.feature for p in steps],
            "mean": [a.precision for a in lineage],
            "precision": [a.precision for a in lineage],
            "coverage": [a.coverage for a in lineage],
            "precision_lb": [search.lower_bound(a) for a in lineage],
            "n_samples": [a.n for a in lineage],
            "support": [a.support for a in lineage],
            "examples": [sampler.examples(a) for a in lineage],
            "all_precision": root.precision,
            "num_preds": sampler.n_samples,
            "success": bool(result.success),
            "message": message,
            "names": names,
            "step_names": [p.text for p in steps],
            "predicates": [p.to_dict() for p in steps],
            "prediction": np.array([sampler.instance_label]),
            "instance": x.copy(),
            "instances": x[None, :].copy(),
            "search": {
                "sampling": self.sampling,
                "sizes_explored": result.sizes_explored,
                "n_candidates": result.n_candidates,
                "stopped_because": result.stopped_because,
                "n_predictor_calls": sampler.n_predictor_calls,
                "n_predicted_rows": sampler.n_predicted_rows,
            },
        }
        meta = self.meta
        meta["params"].update(params)
        data = {"anchor": names, "precision": float(precision), "coverage": float(coverage), "raw": raw}
        return Explanation(meta=meta, data=data)

    def _merged_names(self, steps: list[Predicate]) -> list[str]:
        """One readable condition per feature, in the order features entered the anchor."""
        order, by_feature = [], {}
        for p in steps:
            if p.feature not in by_feature:
                order.append(p.feature)
                by_feature[p.feature] = []
            by_feature[p.feature].append(p)
        names = []
        for j in order:
            preds = by_feature[j]
            lower = [p for p in preds if p.op == ">"]
            upper = [p for p in preds if p.op == "<="]
            if lower and upper:
                name = self.feature_names[j]
                names.append(f"{lower[0].value:.2f} < {name} <= {upper[0].value:.2f}")
            else:
                names.append(preds[0].text)
        return names

    def readable_rows(self, X):
        """Rows (predictor-input layout) as a DataFrame with feature names and category names.

        Handy to show ``raw['examples']`` or ``raw['instance']``; missing values become None.

        Examples
        --------
        >>> X = np.array([[0.0, 25.0], [1.0, 40.0]])
        >>> explainer = AnchorTabular(lambda x: x[:, 0].astype(int), ['Sex', 'Age'], {0: ['F', 'M']}).fit(X)
        >>> explainer.readable_rows(X[1]).to_dict('records')
        [{'Sex': 'M', 'Age': 40.0}]
        """
        import pandas as pd

        check_is_fitted(self, "sampler_", hint="call fit(train_data) first")
        ordinal = self._to_ordinal(self._check_rows(np.atleast_2d(X), "X"), "X")
        columns = {}
        for j, name in enumerate(self.feature_names):
            values = ordinal[:, j]
            if j in self.categorical_names:
                codes = self.sampler_.feature_values[j]
                labels = self.sampler_.category_labels[j]
                lookup = dict(zip(codes.tolist(), labels))
                columns[name] = [None if np.isnan(v) else lookup.get(float(v), f"{v:g}") for v in values]
            else:
                columns[name] = [None if np.isnan(v) else float(v) for v in values]
        return pd.DataFrame(columns)

    # ------------------------------------------------------------------ held-out checks
    def anchor_mask(self, X, explanation: Explanation) -> np.ndarray:
        """Boolean mask of the rows of ``X`` (predictor-input layout) that satisfy the anchor.

        Examples
        --------
        >>> X = np.arange(20.0).reshape(-1, 1)
        >>> explainer = AnchorTabular(lambda x: (x[:, 0] > 9).astype(int), ['a'], seed=0).fit(X)
        >>> int(explainer.anchor_mask(X, explainer.explain(X[15])).sum())
        10
        """
        X = self._check_rows(X, "X")
        ordinal = self._to_ordinal(X, "X")
        mask = np.ones(X.shape[0], dtype=bool)
        for d in explanation.data["raw"]["predicates"]:
            p = Predicate.from_dict(d)
            if not 0 <= p.feature < ordinal.shape[1]:
                raise DataError(f"the explanation names feature {p.feature}, which this explainer does not have.")
            mask &= p.holds_on_values(ordinal[:, p.feature])
        return mask

    def anchor_precision_on(self, X, explanation, *, predictions=None) -> dict | list[dict]:
        """Precision and coverage of anchors on real rows, e.g. a held-out test split.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_columns)
            Rows in the predictor's input layout.
        explanation : Explanation or list of Explanation
        predictions : array-like, optional
            The predictor's output on ``X`` (probabilities or labels), to avoid calling it again.

        Returns
        -------
        dict or list of dict
            Per explanation: ``precision`` (share of covered rows predicted like the explained
            instance; NaN when no row is covered), ``coverage`` (share of rows covered),
            ``n_covered`` and ``n_agree``.
        """
        explanations = explanation if isinstance(explanation, (list, tuple)) else [explanation]
        X = self._check_rows(X, "X")
        masks = [self.anchor_mask(X, e) for e in explanations]
        labels = np.zeros(X.shape[0], dtype=np.int64)
        if predictions is not None:
            labels = labels_from_output(np.asarray(predictions), X.shape[0])
        else:
            needed = np.logical_or.reduce(masks) if masks else np.zeros(X.shape[0], dtype=bool)
            if needed.any():
                labels[needed] = call_predictor(self._predictor, X[needed], self.dtype)
        results = []
        for e, mask in zip(explanations, masks):
            target = int(np.asarray(e.data["raw"]["prediction"]).ravel()[0])
            agree = int(np.count_nonzero(labels[mask] == target))
            covered = int(mask.sum())
            results.append({
                "precision": agree / covered if covered else float("nan"),
                "coverage": covered / X.shape[0],
                "n_covered": covered,
                "n_agree": agree,
            })
        return results if isinstance(explanation, (list, tuple)) else results[0]
