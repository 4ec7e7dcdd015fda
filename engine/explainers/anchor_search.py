"""Beam search over anchors, with the KL-LUCB bandit choosing the most precise candidates.

The search (Ribeiro, Singh & Guestrin, "Anchors", AAAI 2018) grows anchors one predicate at a
time. At size ``k`` every anchor of the beam is extended by each predicate it does not have yet;
candidates that cannot beat the coverage of the best anchor found so far are dropped (adding a
predicate never increases coverage). KL-LUCB (Kaufmann & Kalyanakrishnan, COLT 2013) then samples
the candidates until, with probability ``1 - delta``, the ``beam_size`` it keeps are within
``tau`` of the most precise ones. Each kept anchor is sampled until its precision is known to
lie above ``threshold - epsilon_stop`` (lower confidence bound) or below
``threshold + epsilon_stop`` (upper bound); one whose estimate reaches ``threshold`` with such a
lower bound is *eligible*, and the eligible anchor of largest coverage wins.

Confidence bounds are Chernoff-KL bounds on a Bernoulli mean: with ``n`` samples and estimate
``p``, the upper bound is the largest ``q >= p`` with ``n * KL(p || q) <= beta`` and the lower
bound the smallest ``q <= p`` with the same budget, found by bisection for all arms at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.errors import TrainingCancelled
from engine.explainers.anchor_sampler import Arm, TabularSampler

#: Constants of the KL-LUCB exploration rate beta(t) = log(K1 * n_arms * t**ALPHA / delta) + log log(...).
K1 = 405.5
ALPHA = 1.1
_EPS = 1e-12
#: Samples predicted ahead per arm, in batches, whenever a predictor call is made anyway; with
#: 'rows' sampling the first call of a search predicts this many batches of the root's order.
LOOKAHEAD_BATCHES = 4
FIRST_LOOKAHEAD_BATCHES = 20


def kl_bernoulli(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL divergence between Bernoulli(p) and Bernoulli(q), elementwise."""
    p = np.clip(p, _EPS, 1.0 - _EPS)
    q = np.clip(q, _EPS, 1.0 - _EPS)
    return p * np.log(p / q) + (1.0 - p) * np.log((1.0 - p) / (1.0 - q))


def _kl_bisect(p, level, iterations: int, upper: bool) -> np.ndarray:
    """Bisect between ``p`` (where ``KL(p || p) = 0``) and 1 (``upper``) or 0 for ``KL(p || q) = level``."""
    p = np.asarray(p, dtype=np.float64)
    level = np.broadcast_to(np.asarray(level, dtype=np.float64), p.shape)
    near, far = p.copy(), (np.ones_like(p) if upper else np.zeros_like(p))
    for _ in range(iterations):
        mid = 0.5 * (near + far)
        inside = kl_bernoulli(p, mid) <= level
        near = np.where(inside, mid, near)
        far = np.where(inside, far, mid)
    fallback = np.maximum(near, p) if upper else np.minimum(near, p)
    return np.where(kl_bernoulli(p, far) <= level, far, fallback)


def kl_upper_bound(p, level, iterations: int = 30) -> np.ndarray:
    """Largest ``q`` in ``[p, 1]`` with ``KL(p || q) <= level`` (vectorised bisection).

    Examples
    --------
    >>> round(float(kl_upper_bound(np.array([0.5]), np.array([0.0]))[0]), 6)
    0.5
    >>> 0.9 < float(kl_upper_bound(np.array([0.9]), np.array([0.01]))[0]) < 1.0
    True
    """
    return _kl_bisect(p, level, iterations, upper=True)


def kl_lower_bound(p, level, iterations: int = 30) -> np.ndarray:
    """Smallest ``q`` in ``[0, p]`` with ``KL(p || q) <= level`` (vectorised bisection).

    Examples
    --------
    >>> 0.8 < float(kl_lower_bound(np.array([0.9]), np.array([0.01]))[0]) < 0.9
    True
    """
    return _kl_bisect(p, level, iterations, upper=False)


def lucb_beta(n_arms: int, t: int, delta: float) -> float:
    """Exploration rate of KL-LUCB at round ``t`` for ``n_arms`` arms."""
    base = np.log(K1 * n_arms * t**ALPHA / delta)
    return float(base + np.log(base))


@dataclass
class SearchSettings:
    """The explain-time settings the search uses (see ``AnchorTabular.explain``)."""

    threshold: float = 0.95
    delta: float = 0.1
    tau: float = 0.15
    batch_size: int = 100
    beam_size: int = 1
    stop_on_first: bool = False
    max_anchor_size: int | None = None
    min_samples_start: int = 100
    epsilon_stop: float = 0.05
    verbose: bool = False
    verbose_every: int = 1


@dataclass
class SearchResult:
    """The outcome of one search."""

    best: Arm
    root: Arm
    success: bool
    sizes_explored: int
    n_candidates: int
    stopped_because: str


class AnchorSearch:
    """Beam search with KL-LUCB over the arms a :class:`TabularSampler` makes.

    Parameters
    ----------
    sampler : TabularSampler
        Prepared for one instance (``set_instance_label``, ``build_lookups``, ``set_coverage_rows``).
    settings : SearchSettings
    progress : callable, optional
        Called after each anchor size with a dict: ``size``, ``anchor`` (predicate texts of the
        best eligible anchor so far, or of the most precise candidate), ``precision``,
        ``coverage``, ``found`` and ``n_samples``.
    cancel : engine.training.CancelToken, optional
        Checked between sampling rounds; raises :class:`~engine.errors.TrainingCancelled`.

    Examples
    --------
    >>> X = np.arange(200, dtype=float).reshape(-1, 1)
    >>> s = TabularSampler(lambda x: (x[:, 0] >= 100).astype(int), (25, 50, 75), [0], [], ['a'], {}, seed=0)
    >>> _ = s.deferred_init(X, X); _ = s.set_instance_label(np.array([150.])); _ = s.build_lookups(np.array([150.]))
    >>> _ = s.set_coverage_rows(10000)
    >>> result = AnchorSearch(s, SearchSettings()).run()
    >>> [s.predicates_[p].text for p in result.best.added], result.success
    (['a > 99.50'], True)
    """

    def __init__(self, sampler: TabularSampler, settings: SearchSettings, *,
                 progress: Callable[[dict], None] | None = None, cancel=None):
        self.sampler = sampler
        self.settings = settings
        self.progress = progress
        self.cancel = cancel
        n_predicates = len(sampler.predicates_)
        # Union bound over the anchors of the beam that are certified together.
        self.beta_certify = float(np.log((1 + (settings.beam_size - 1) * max(n_predicates, 1)) / settings.delta))
        self.lookahead = LOOKAHEAD_BATCHES * settings.batch_size
        self.first_lookahead = FIRST_LOOKAHEAD_BATCHES * settings.batch_size

    # ------------------------------------------------------------------ bounds
    def lower_bound(self, arm: Arm) -> float:
        if arm.n == 0:
            return 0.0
        return float(kl_lower_bound(np.array([arm.precision]), self.beta_certify / arm.n)[0])

    def upper_bound(self, arm: Arm) -> float:
        if arm.n == 0:
            return 1.0
        return float(kl_upper_bound(np.array([arm.precision]), self.beta_certify / arm.n)[0])

    def eligible(self, arm: Arm) -> bool:
        s = self.settings
        return arm.n > 0 and arm.precision >= s.threshold and self.lower_bound(arm) > s.threshold - s.epsilon_stop

    # ------------------------------------------------------------------ sampling helpers
    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise TrainingCancelled("The anchor search was cancelled.")

    def _sample(self, requests, lookahead: int | None = None) -> None:
        requests = [(arm, k) for arm, k in requests if k > 0 and not arm.exhausted]
        if requests:
            self._check_cancel()
            self.sampler.sample(requests, lookahead=self.lookahead if lookahead is None else lookahead)

    def _certify(self, arms: list[Arm]) -> None:
        """Sample ``arms`` until each is known to be above or below the threshold (or exhausted)."""
        s = self.settings
        while True:
            pending = []
            for arm in arms:
                if arm.exhausted:
                    continue
                if arm.precision >= s.threshold:
                    undecided = self.lower_bound(arm) < s.threshold - s.epsilon_stop
                else:
                    undecided = self.upper_bound(arm) >= s.threshold + s.epsilon_stop
                if undecided:
                    pending.append((arm, s.batch_size))
            if not pending:
                return
            self._sample(pending)

    def _kl_lucb(self, arms: list[Arm], m: int) -> list[Arm]:
        """The ``m`` arms of highest precision, within ``tau`` with probability ``1 - delta``."""
        s = self.settings
        if len(arms) > m:
            t = 1
            while True:
                means = np.array([a.precision for a in arms])
                counts = np.array([max(a.n, 1) for a in arms], dtype=np.float64)
                level = lucb_beta(len(arms), t, s.delta) / counts
                ub, lb = kl_upper_bound(means, level), kl_lower_bound(means, level)
                # An exhausted arm's training precision is known exactly.
                exhausted = np.array([a.exhausted for a in arms])
                ub[exhausted] = lb[exhausted] = means[exhausted]
                rank = np.argsort(-means, kind="stable")
                top, rest = rank[:m], rank[m:]
                upper = rest[np.argmax(ub[rest])]
                lower = top[np.argmin(lb[top])]
                if ub[upper] - lb[lower] <= s.tau:
                    break
                self._sample([(arms[upper], s.batch_size), (arms[lower], s.batch_size)])
                t += 1
        means = np.array([a.precision for a in arms])
        return [arms[i] for i in np.argsort(-means, kind="stable")[:m]]

    def _propose(self, parents: list[Arm], best_coverage: float) -> list[Arm]:
        """Every one-predicate extension of ``parents`` that could beat ``best_coverage``."""
        predicates = self.sampler.predicates_
        seen, candidates = set(), []
        for parent in parents:
            # At most one '<=' and one '>' per numerical feature, one value per categorical one.
            used = {(predicates[p].feature, predicates[p].op) for p in parent.predicates}
            for pid, pred in enumerate(predicates):
                key = tuple(sorted(parent.predicates + (pid,)))
                if pid in parent.predicates or (pred.feature, pred.op) in used or key in seen:
                    continue
                seen.add(key)
                child = self.sampler.extend(parent, pid)
                if child.support > 0 and child.coverage > best_coverage:
                    candidates.append(child)
        return candidates

    # ------------------------------------------------------------------ the search
    def run(self) -> SearchResult:
        s = self.settings
        root = self.sampler.root()
        sampler_rows = self.sampler.sampling != "perturb"  # predictions of training rows are shared
        # The first call predicts a long prefix of the root's random order: the first draws of
        # every one-predicate anchor come from it (predictor calls cost far more than rows).
        self._check_cancel()
        first = self.first_lookahead if sampler_rows else self.lookahead
        self.sampler.sample([(root, s.min_samples_start)], lookahead=first)
        self._certify([root])
        if self.eligible(root):
            return SearchResult(root, root, True, 0, 0, "the empty anchor is precise enough")

        max_size = len(self.sampler.predicates_)
        if s.max_anchor_size is not None:
            max_size = min(max_size, s.max_anchor_size)
        beam, evaluated = [root], []
        best, best_coverage = None, -1.0
        n_candidates, size, stopped = 0, 0, "no candidate could improve the coverage"
        while size < max_size:
            candidates = self._propose(beam, best_coverage)
            if not candidates:
                break
            size += 1
            n_candidates += len(candidates)
            # Look ahead for every new candidate only where predictions are shared (training rows).
            self._sample([(a, s.min_samples_start - a.n) for a in candidates],
                         lookahead=None if sampler_rows else 0)
            beam = self._kl_lucb(candidates, min(s.beam_size, len(candidates)))
            evaluated.extend(beam)
            self._certify(beam)
            stop = False
            for arm in beam:
                if self.eligible(arm) and arm.coverage > best_coverage:
                    best, best_coverage = arm, arm.coverage
                    if best_coverage == 1.0 or s.stop_on_first:
                        stop = True
                        stopped = "stop_on_first" if s.stop_on_first else "coverage reached 1"
                        break
            self._report(size, beam, best)
            if stop:
                break
        else:
            stopped = "max_anchor_size reached" if size else stopped
        if best is not None:
            return SearchResult(best, root, True, size, n_candidates, stopped)
        # No anchor reached the threshold: return the candidate whose precision is surely highest
        # (largest lower confidence bound, so one backed by few rows does not win; ties: larger coverage).
        fallback = max(evaluated, key=lambda a: (self.lower_bound(a), a.coverage)) if evaluated else root
        return SearchResult(fallback, root, False, size, n_candidates, stopped)

    def _report(self, size: int, beam: list[Arm], best: Arm | None) -> None:
        shown = best if best is not None else beam[0]
        texts = [self.sampler.predicates_[p].text for p in shown.added]
        if self.settings.verbose and size % max(self.settings.verbose_every, 1) == 0:
            for arm in beam:
                names = " AND ".join(self.sampler.predicates_[p].text for p in arm.added)
                print(f"size {size}: {names}  precision={arm.precision:.3f}  coverage={arm.coverage:.3f}  "
                      f"samples={arm.n}{'  eligible' if self.eligible(arm) else ''}")
        if self.progress is not None:
            self.progress({
                "size": size,
                "anchor": texts,
                "precision": shown.precision,
                "coverage": shown.coverage,
                "found": best is not None,
                "n_samples": self.sampler.n_samples,
            })
