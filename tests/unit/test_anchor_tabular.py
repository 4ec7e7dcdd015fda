"""Specification of AnchorTabular: anchors, their precision and coverage, the reference bugs fixed."""

from __future__ import annotations

import numpy as np
import pytest

from engine.datasets import load_dataset
from engine.errors import DataError, NotFittedError, PredictorCallError, PredictorReturnTypeError, TrainingCancelled
from engine.explainers import AnchorTabular
from engine.explainers.anchor_sampler import TabularSampler, labels_from_output, percentile_boundaries
from engine.explainers.anchor_search import kl_bernoulli, kl_lower_bound, kl_upper_bound
from engine.explanation import Explanation
from engine.training import CancelToken

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris():
    """Iris split 2/3 train, 1/3 test (stratified, fixed seed) and a small random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    df = load_dataset("iris")
    X = df[IRIS_FEATURES].to_numpy(dtype=np.float64)
    y = df["species"].astype("category").cat.codes.to_numpy()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=0)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_tr, y_tr)
    return X_tr, X_te, model


@pytest.fixture(scope="module")
def adult():
    """3,000 Adult rows: Age, Sex, Marital Status, Hours per week; categoricals ordinal-coded."""
    df = load_dataset("adult").iloc[:3000]
    sex = sorted(df["sex"].unique())
    marital = sorted(df["marital_status"].unique())
    X = np.stack([
        df["age"].to_numpy(dtype=float),
        df["sex"].map({c: i for i, c in enumerate(sex)}).to_numpy(dtype=float),
        df["marital_status"].map({c: i for i, c in enumerate(marital)}).to_numpy(dtype=float),
        df["hours_per_week"].to_numpy(dtype=float),
    ], axis=1)
    names = ["Age", "Sex", "Marital Status", "Hours per week"]
    return X, names, {1: sex, 2: marital}


def adult_rule(marital_married_code):
    """A transparent 'model': high income iff married and working more than 40 hours."""

    def predict(x):
        p = ((x[:, 2] == marital_married_code) & (x[:, 3] > 40)).astype(float)
        return np.stack([1 - p, p], axis=1)

    return predict


def explain_iris(model, X_tr, x, **kwargs):
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    return explainer, explainer.explain(x, **kwargs)


# ---------------------------------------------------------------------------- the payload
def test_explanation_has_the_reference_keys_and_readable_rules(iris):
    X_tr, X_te, model = iris
    explainer, exp = explain_iris(model, X_tr, X_te[0])
    assert isinstance(exp, Explanation)
    assert set(exp.data) == {"anchor", "precision", "coverage", "raw"}
    assert exp.meta["name"] == "AnchorTabular" and exp.meta["type"] == ["blackbox"]
    assert exp.meta["params"]["threshold"] == 0.95 and exp.meta["params"]["seed"] == 0
    for key in ("feature", "mean", "precision", "coverage", "examples", "all_precision", "num_preds",
                "success", "names", "prediction", "instance", "instances"):
        assert key in exp.raw
    assert exp.anchor == exp.raw["names"] and len(exp.anchor) >= 1
    assert all(any(f in rule for f in IRIS_FEATURES) for rule in exp.anchor)
    assert exp.raw["prediction"][0] == model.predict(X_te[:1])[0]
    np.testing.assert_array_equal(exp.raw["instance"], X_te[0])


def test_per_step_lists_are_aligned_and_coverage_shrinks(iris):
    X_tr, X_te, model = iris
    _, exp = explain_iris(model, X_tr, X_te[3])
    raw = exp.raw
    n = len(raw["step_names"])
    for key in ("feature", "precision", "mean", "coverage", "precision_lb", "n_samples", "support", "examples",
                "predicates"):
        assert len(raw[key]) == n, key
    assert np.all(np.diff(raw["coverage"]) <= 1e-12)
    assert np.all(np.diff(raw["support"]) <= 0)
    assert exp.precision == raw["precision"][-1] and exp.coverage == raw["coverage"][-1]


def test_explanation_round_trips_through_json(iris):
    X_tr, X_te, model = iris
    _, exp = explain_iris(model, X_tr, X_te[1])
    back = Explanation.from_json(exp.to_json())
    assert back == exp
    assert back.anchor == exp.anchor


# ---------------------------------------------------------------------------- precision and coverage
def test_precision_reaches_threshold_unless_flagged_not_found(iris):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    explanations = explainer.explain(X_te[:12], threshold=0.9)
    assert any(e.raw["success"] for e in explanations)
    for exp in explanations:
        if exp.raw["success"]:
            assert exp.precision >= 0.9
            assert exp.raw["precision_lb"][-1] > 0.9 - 0.05
            assert exp.raw["message"].startswith("anchor found")
        else:
            assert "no anchor reached precision 0.9" in exp.raw["message"]


def test_anchors_hold_their_precision_on_held_out_iris_rows(iris):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    explanations = [e for e in explainer.explain(X_te) if e.raw["success"]]
    assert len(explanations) >= 10
    checks = explainer.anchor_precision_on(X_te, explanations)
    precisions = np.array([c["precision"] for c in checks])
    assert np.nanmean(precisions) >= 0.9
    # The check is what it says: the share of covered test rows predicted like the instance.
    exp, check = explanations[0], checks[0]
    mask = explainer.anchor_mask(X_te, exp)
    agree = model.predict(X_te[mask]) == exp.raw["prediction"][0]
    assert check["n_covered"] == mask.sum() and check["precision"] == pytest.approx(agree.mean())
    assert check["coverage"] == pytest.approx(mask.mean())
    assert explainer.anchor_precision_on(X_te, exp, predictions=model.predict_proba(X_te)) == check


def test_coverage_lies_in_unit_interval_and_is_the_share_of_training_rows(iris):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    for exp in explainer.explain(X_te[:5]):
        assert 0.0 < exp.coverage <= 1.0
        # With more coverage samples than training rows, coverage is exact on the training data.
        assert exp.coverage == pytest.approx(explainer.anchor_mask(X_tr, exp).mean())
        assert exp.raw["support"][-1] == explainer.anchor_mask(X_tr, exp).sum()


@pytest.mark.parametrize("sampling", ["rows", "perturb"])
def test_sampled_rows_satisfy_the_anchor(iris, sampling):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=1, sampling=sampling).fit(X_tr)
    exp = explainer.explain(X_te[5])
    for step, examples in enumerate(exp.raw["examples"]):
        partial = Explanation(exp.meta, {"raw": {"predicates": exp.raw["predicates"][: step + 1]}})
        for key in ("covered_true", "covered_false"):
            if len(examples[key]):
                assert explainer.anchor_mask(examples[key], partial).all()
        agree = model.predict(examples["covered_true"]) if len(examples["covered_true"]) else []
        assert np.all(np.asarray(agree) == exp.raw["prediction"][0])
    # The reference-style sampler call draws rows that satisfy the anchor, too.
    sampler = explainer.sampler_
    anchor = tuple(range(min(2, len(sampler.predicates_))))
    covered_true, covered_false, labels, data, coverage, position = sampler((7, anchor), 300)
    assert position == 7 and labels.shape == (300,) and data.shape == (300, len(sampler.predicates_))
    assert data[:, list(anchor)].all()
    samples = np.concatenate([covered_true, covered_false])
    holds = np.ones(len(samples), dtype=bool)
    for pid in anchor:
        p = sampler.predicates_[pid]
        holds &= p.holds_on_values(samples[:, p.feature].astype(np.float64))
    assert holds.all()
    assert 0.0 < coverage <= 1.0


def test_anchor_of_a_clear_rule_is_that_rule():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3))
    q75 = np.percentile(X[:, 1], 75)
    explainer = AnchorTabular(lambda x: (x[:, 1] > q75).astype(int), ["a", "b", "c"], seed=0).fit(X)
    exp = explainer.explain(np.array([0.0, 2.0, 0.0]))
    assert exp.raw["success"] and exp.anchor == [f"b > {q75:.2f}"]
    assert exp.precision == 1.0 and exp.coverage == pytest.approx(0.25, abs=0.01)


def test_a_model_that_always_predicts_the_same_class_gets_the_empty_anchor():
    X = np.random.default_rng(0).normal(size=(300, 2))
    explainer = AnchorTabular(lambda x: np.zeros(len(x), dtype=int), ["a", "b"], seed=0).fit(X)
    exp = explainer.explain(X[0])
    assert exp.anchor == [] and exp.precision == 1.0 and exp.coverage == 1.0 and exp.raw["success"]


# ---------------------------------------------------------------------------- reproducibility and batches
def test_same_seed_gives_the_same_explanation_and_rows_do_not_influence_each_other(iris):
    X_tr, X_te, model = iris
    first = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=3).fit(X_tr)
    second = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=3).fit(X_tr)
    batch = first.explain(X_te[:4], threshold=0.9)
    assert isinstance(batch, list) and len(batch) == 4
    for i, exp in enumerate(batch):
        alone = second.explain(X_te[i], threshold=0.9)
        # Identical but for the call counters (a lone row's label takes one more call).
        for e in (alone, exp):
            del e.raw["search"]["n_predictor_calls"]
        assert alone.to_json() == exp.to_json()
    # A single row given as a 2-D array gives one Explanation, not a list.
    assert isinstance(first.explain(X_te[:1]), Explanation)


def test_training_row_predictions_are_cached_until_the_predictor_is_reset(iris):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0, sampling="rows").fit(X_tr)
    cold = explainer.explain(X_te[2])
    warm = explainer.explain(X_te[2])
    assert cold.raw["search"]["n_predicted_rows"] > 0
    assert warm.raw["search"]["n_predicted_rows"] == 0
    assert warm.anchor == cold.anchor
    explainer.reset_predictor(model.predict_proba)
    assert explainer.explain(X_te[2]).raw["search"]["n_predicted_rows"] == cold.raw["search"]["n_predicted_rows"]


# ---------------------------------------------------------------------------- categorical data
def test_categorical_names_appear_in_the_anchor(adult):
    X, names, cats = adult
    married = cats[2].index("Married-civ-spouse")
    explainer = AnchorTabular(adult_rule(married), names, cats, seed=0).fit(X)
    row = X[(X[:, 2] == married) & (X[:, 3] > 45)][0]
    exp = explainer.explain(row)
    assert exp.raw["success"] and exp.raw["prediction"][0] == 1
    assert "Marital Status = Married-civ-spouse" in exp.anchor
    assert any(rule.startswith("Hours per week >") for rule in exp.anchor)
    assert exp.precision == 1.0


def test_example_rows_can_be_shown_with_names(adult):
    X, names, cats = adult
    married = cats[2].index("Married-civ-spouse")
    explainer = AnchorTabular(adult_rule(married), names, cats, seed=0).fit(X)
    exp = explainer.explain(X[(X[:, 2] == married) & (X[:, 3] > 45)][0])
    table = explainer.readable_rows(exp.raw["examples"][-1]["covered_true"])
    assert list(table.columns) == names and len(table) == 10
    assert set(table["Marital Status"]) == {"Married-civ-spouse"} and (table["Hours per week"] > 40).all()
    assert set(table["Sex"]) <= set(cats[1])


def test_categories_coded_other_than_0_to_n_minus_1(adult):
    X, names, cats = adult
    married = cats[2].index("Married-civ-spouse")
    row = X[(X[:, 2] == married) & (X[:, 3] > 45)][0]
    reference = AnchorTabular(adult_rule(married), names, cats, seed=0).fit(X).explain(row)
    # The same data with codes 10, 20, 30, ...: the names still attach to the right categories.
    shifted = X.copy()
    shifted[:, 1:3] = (shifted[:, 1:3] + 1) * 10
    rule = adult_rule((married + 1) * 10)
    exp = AnchorTabular(rule, names, cats, seed=0).fit(shifted).explain(
        np.concatenate([row[:1], (row[1:3] + 1) * 10, row[3:]]))
    assert exp.anchor == reference.anchor
    # A dict {code: name} says exactly which code is which.
    as_dict = {1: {(i + 1) * 10: n for i, n in enumerate(cats[1])}, 2: {(i + 1) * 10: n for i, n in enumerate(cats[2])}}
    exp = AnchorTabular(rule, names, as_dict, seed=0).fit(shifted).explain(
        np.concatenate([row[:1], (row[1:3] + 1) * 10, row[3:]]))
    assert exp.anchor == reference.anchor
    # Codes that fit neither convention are refused with the fix in the message.
    with pytest.raises(DataError, match="as a dict"):
        AnchorTabular(rule, names, {1: ["only one name"]}, seed=0).fit(shifted)


def one_hot(X, cats):
    blocks = []
    for j in range(X.shape[1]):
        if j in cats:
            blocks.append(np.eye(len(cats[j]))[X[:, j].astype(int)])
        else:
            blocks.append(X[:, j : j + 1])
    return np.concatenate(blocks, axis=1)


def test_one_hot_input_gives_the_same_anchors_as_ordinal_input(adult):
    X, names, cats = adult
    married = cats[2].index("Married-civ-spouse")
    ordinal_rule = adult_rule(married)
    X_ohe = one_hot(X, cats)
    width = len(cats[1])

    def ohe_rule(x):  # the same model, reading the one-hot columns
        marital = x[:, 1 + width : 1 + width + len(cats[2])].argmax(axis=1)
        hours = x[:, -1]
        p = ((marital == married) & (hours > 40)).astype(float)
        return np.stack([1 - p, p], axis=1)

    rows = [int(np.flatnonzero((X[:, 2] == married) & (X[:, 3] > 45))[0]), 5, 17]
    ordinal = AnchorTabular(ordinal_rule, names, cats, seed=0).fit(X).explain(X[rows])
    ohe = AnchorTabular(ohe_rule, names, cats, ohe=True, seed=0).fit(X_ohe).explain(X_ohe[rows])
    for a, b in zip(ordinal, ohe):
        assert a.anchor == b.anchor and a.precision == b.precision and a.coverage == b.coverage
        assert b.raw["instance"].shape == (X_ohe.shape[1],)
        assert b.raw["examples"][-1]["covered_true"].shape[1] == X_ohe.shape[1]
    explainer = AnchorTabular(ohe_rule, names, cats, ohe=True, seed=0).fit(X_ohe)
    assert explainer.anchor_precision_on(X_ohe, ohe[0])["precision"] == 1.0
    broken = X_ohe.copy()
    broken[0, 2:4] = 1.0  # two hot columns for Sex
    with pytest.raises(DataError, match="more than one hot column"):
        explainer.explain(broken[0])
    with pytest.raises(DataError, match="features"):
        explainer.fit(X)  # ordinal data given to a one-hot explainer


# ---------------------------------------------------------------------------- predictor outputs
def test_single_sigmoid_column_is_read_as_probability_of_class_1():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 3))

    def proba(x):
        return 1 / (1 + np.exp(-4 * x[:, 0]))

    sigmoid = AnchorTabular(lambda x: proba(x)[:, None], ["a", "b", "c"], seed=0).fit(X)
    one_d = AnchorTabular(proba, ["a", "b", "c"], seed=0).fit(X)
    two_columns = AnchorTabular(lambda x: np.stack([1 - proba(x), proba(x)], 1), ["a", "b", "c"], seed=0).fit(X)
    x = np.array([-1.5, 0.0, 0.0])
    exp = sigmoid.explain(x)
    # The reference took argmax of the single column (always 0): every sample agreed and the
    # anchor was empty with precision 1. Here the label is p > 0.5 and the anchor is about 'a'.
    assert exp.raw["prediction"][0] == 0
    assert exp.anchor and exp.anchor[0].startswith("a <=")
    assert exp.raw["all_precision"] < 0.7
    assert exp.anchor == two_columns.explain(x).anchor == one_d.explain(x).anchor
    assert sigmoid.explain(np.array([1.5, 0.0, 0.0])).raw["prediction"][0] == 1


def test_labels_from_output_rules():
    np.testing.assert_array_equal(labels_from_output(np.array([[0.3], [0.8]]), 2), [0, 1])
    np.testing.assert_array_equal(labels_from_output(np.array([0.3, 0.8]), 2), [0, 1])
    np.testing.assert_array_equal(labels_from_output(np.array([2.0, 0.0]), 2), [2, 0])
    np.testing.assert_array_equal(labels_from_output(np.array([[0.1, 0.2, 0.7]]), 1), [2])
    with pytest.raises(PredictorReturnTypeError, match="logits"):
        labels_from_output(np.array([-2.5, 3.1]), 2)
    with pytest.raises(PredictorReturnTypeError, match="shape"):
        labels_from_output(np.zeros((3, 2)), 2)
    with pytest.raises(PredictorReturnTypeError, match="class names"):
        labels_from_output(np.array(["a", "b"]), 2)


# ---------------------------------------------------------------------------- stop_on_first
def test_stop_on_first_returns_the_first_eligible_anchor():
    """Beam of 2: 'x1 = 1' is eligible at size 1 with coverage 0.1; 'x2 = 1 AND x3 = 1' is
    eligible at size 2 with coverage ~0.5. The reference ignored stop_on_first and returned the
    larger-coverage anchor either way."""
    rng = np.random.default_rng(0)
    n = 4000
    X = np.stack([rng.random(n) < 0.1, rng.random(n) < 0.7, rng.random(n) < 0.7], axis=1).astype(float)

    def predict(x):
        return ((x[:, 0] == 1) | ((x[:, 1] == 1) & (x[:, 2] == 1))).astype(int)

    cats = {0: ["no", "yes"], 1: ["no", "yes"], 2: ["no", "yes"]}
    explainer = AnchorTabular(predict, ["x1", "x2", "x3"], cats, seed=0).fit(X)
    x = np.array([1.0, 1.0, 1.0])
    first = explainer.explain(x, beam_size=2, stop_on_first=True)
    best = explainer.explain(x, beam_size=2, stop_on_first=False)
    assert first.anchor == ["x1 = yes"] and first.raw["search"]["stopped_because"] == "stop_on_first"
    assert first.raw["search"]["sizes_explored"] == 1
    assert sorted(best.anchor) == ["x2 = yes", "x3 = yes"] and best.coverage > 0.4 > first.coverage
    assert first.raw["success"] and best.raw["success"]


# ---------------------------------------------------------------------------- missing values
def test_nan_in_numerical_columns_gets_its_own_bin():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 2))
    X[rng.random(1000) < 0.2, 0] = np.nan

    def predict(x):
        return (np.nan_to_num(x[:, 0], nan=5.0) > 0.5).astype(int)

    explainer = AnchorTabular(predict, ["a", "b"], seed=0).fit(X)
    bounds = explainer.sampler_.boundaries_[0]
    assert bounds.size == 3 and np.isfinite(bounds).all()
    np.testing.assert_allclose(bounds, np.nanpercentile(X[:, 0], (25, 50, 75)))
    missing = explainer.explain(np.array([np.nan, 0.0]))
    assert missing.anchor == ["a is missing"] and missing.raw["success"]
    assert explainer.anchor_precision_on(X, missing)["coverage"] == pytest.approx(np.isnan(X[:, 0]).mean())
    present = explainer.explain(np.array([-2.0, 0.0]))
    assert present.raw["success"] and present.anchor[0].startswith("a <=")
    # Rows with a missing value never satisfy a numerical condition.
    assert not explainer.anchor_mask(X, present)[np.isnan(X[:, 0])].any()


def test_unseen_category_and_empty_one_hot_group_are_handled(adult):
    X, names, cats = adult
    married = cats[2].index("Married-civ-spouse")
    explainer = AnchorTabular(adult_rule(married), names, cats, seed=0).fit(X)
    row = X[(X[:, 2] == married) & (X[:, 3] > 45)][0].copy()
    row[1] = 7.0  # a Sex code never seen in training: no condition can be put on it
    exp = explainer.explain(row)
    assert exp.raw["success"] and not any(rule.startswith("Sex") for rule in exp.anchor)
    # One-hot: a row with no hot column for a feature has that feature missing.
    X_ohe = one_hot(X, cats)
    ohe = AnchorTabular(lambda x: np.zeros(len(x), dtype=int), names, cats, ohe=True, seed=0).fit(X_ohe)
    empty = X_ohe[0].copy()
    empty[1:3] = 0.0
    assert np.isnan(ohe._to_ordinal(empty[None, :])[0, 1])


def test_percentile_boundaries_drop_nan_and_empty_bins():
    np.testing.assert_allclose(percentile_boundaries(np.array([1.0, 2.0, 3.0, 4.0, np.nan]), (50,)), [2.5])
    np.testing.assert_allclose(percentile_boundaries(np.array([0.0, 0.0, 0.0, 0.0, 9.0]), (25, 50, 75)), [0.0])
    assert percentile_boundaries(np.array([np.nan, np.nan]), (50,)).size == 0


# ---------------------------------------------------------------------------- errors
def test_explain_before_fit_raises_not_fitted():
    explainer = AnchorTabular(lambda x: np.zeros(len(x), dtype=int), ["a", "b"])
    with pytest.raises(NotFittedError, match="fit"):
        explainer.explain(np.zeros(2))


def test_a_failing_predictor_raises_predictor_call_error():
    def broken(x):
        raise RuntimeError("model not loaded")

    with pytest.raises(PredictorCallError, match="model not loaded"):
        AnchorTabular(broken, ["a", "b"])

    calls = {"n": 0}

    def fails_later(x):
        calls["n"] += 1
        if calls["n"] > 1:
            raise ValueError("out of memory")
        return np.zeros(len(x), dtype=int)

    explainer = AnchorTabular(fails_later, ["a", "b"]).fit(np.random.default_rng(0).normal(size=(50, 2)))
    with pytest.raises(PredictorCallError, match="out of memory"):
        explainer.explain(np.zeros(2))


def test_a_predictor_returning_no_array_raises_predictor_return_type_error():
    with pytest.raises(PredictorReturnTypeError, match="numpy array"):
        AnchorTabular(lambda x: [0] * len(x), ["a", "b"])
    with pytest.raises(PredictorReturnTypeError, match="shape"):
        AnchorTabular(lambda x: np.zeros((len(x), 2, 2)), ["a", "b"])


def test_bad_rows_and_arguments_raise_clear_errors(iris):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    with pytest.raises(DataError, match="3 features"):
        explainer.explain(np.zeros(3))
    with pytest.raises(DataError, match="inf"):
        explainer.explain(np.array([1.0, np.inf, 1.0, 1.0]))
    with pytest.raises(ValueError, match="threshold"):
        explainer.explain(X_te[0], threshold=1.5)
    with pytest.raises(ValueError, match="beam_size"):
        explainer.explain(X_te[0], beam_size=0)
    with pytest.raises(ValueError, match="disc_perc"):
        AnchorTabular(model.predict_proba, IRIS_FEATURES).fit(X_tr, disc_perc=(50, 150))
    with pytest.raises(ValueError, match="categorical_names key"):
        AnchorTabular(model.predict_proba, IRIS_FEATURES, {7: ["a"]})
    with pytest.raises(ValueError, match="sampling"):
        AnchorTabular(model.predict_proba, IRIS_FEATURES, sampling="magic")


# ---------------------------------------------------------------------------- search plumbing
def test_progress_is_reported_per_anchor_size_and_cancel_stops(iris):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    events = []
    explainer.explain(X_te[:2], progress=events.append)
    assert events and {e["row"] for e in events} == {0, 1} and all(e["n_rows"] == 2 for e in events)
    assert all(0 <= e["precision"] <= 1 and 0 <= e["coverage"] <= 1 for e in events)
    token = CancelToken()
    token.cancel()
    with pytest.raises(TrainingCancelled):
        explainer.explain(X_te[0], cancel=token)


def test_verbose_prints_the_beam(iris, capsys):
    X_tr, X_te, model = iris
    explainer = AnchorTabular(model.predict_proba, IRIS_FEATURES, seed=0).fit(X_tr)
    explainer.explain(X_te[0], verbose=True)
    assert "size 1:" in capsys.readouterr().out


def test_kl_bounds_bracket_the_estimate_and_tighten_with_samples():
    p = np.array([0.2, 0.5, 0.95, 1.0])
    for n in (10, 100, 1000):
        level = np.log(10) / n
        lb, ub = kl_lower_bound(p, level), kl_upper_bound(p, level)
        assert np.all(lb <= p + 1e-12) and np.all(ub >= p - 1e-12)
        np.testing.assert_allclose(kl_bernoulli(p[:3], lb[:3]), level, rtol=1e-3)
    wide = kl_lower_bound(p, np.log(10) / 10)
    narrow = kl_lower_bound(p, np.log(10) / 1000)
    assert np.all(narrow >= wide)


def test_sampler_codes_unseen_and_missing_values():
    sampler = TabularSampler(lambda x: np.zeros(len(x), dtype=int), (50,), [0], [1], ["a", "b"],
                             {1: np.array([0.0, 1.0])})
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])
    sampler.deferred_init(X, X)
    codes = sampler.encode(np.array([[np.nan, 5.0], [0.5, np.nan]]))
    np.testing.assert_array_equal(codes, [[-1, -2], [0, -1]])


# ---------------------------------------------------------------- small training sets (as the reference)

@pytest.fixture(scope="module", params=["iris", "wine"])
def small_training_set(request):
    """75 iris / 89 wine training rows (a stratified half) and a random forest of 50 trees."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    if request.param == "iris":
        df = load_dataset("iris")
        X, y, names = df[IRIS_FEATURES].to_numpy(dtype=np.float64), df["species"].astype("category").cat.codes, IRIS_FEATURES
    else:
        wine = load_wine()
        X, y, names = wine.data, wine.target, list(wine.feature_names)
    X_tr, X_te, y_tr, _ = train_test_split(X, np.asarray(y), test_size=0.5, stratify=y, random_state=0)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(X_tr, y_tr)
    return X_tr, X_te, model, names


def test_precise_anchors_are_certified_on_a_small_training_set(small_training_set):
    X_tr, X_te, model, names = small_training_set
    explainer = AnchorTabular(model.predict_proba, names, seed=0).fit(X_tr, disc_perc=(25, 50, 75))
    rows = X_te[np.linspace(0, len(X_te) - 1, 8).astype(int)]
    explanations = explainer.explain(rows, threshold=0.95)
    found = [e for e in explanations if e.raw["success"]]
    assert len(found) >= 6, [(e.anchor, e.precision) for e in explanations]
    for e in found:
        assert e.precision >= 0.95
        # Coverage stays the share of training rows that satisfy the anchor.
        assert e.coverage == pytest.approx(explainer.anchor_precision_on(X_tr, [e])[0]["coverage"], abs=1e-9)
    held = explainer.anchor_precision_on(X_te, found, predictions=model.predict_proba(X_te))
    assert np.nanmean([h["precision"] for h in held]) >= 0.85


def test_rows_sampling_alone_cannot_certify_anchors_with_few_rows(small_training_set):
    X_tr, X_te, model, names = small_training_set
    explainer = AnchorTabular(model.predict_proba, names, seed=0, sampling="rows").fit(X_tr)
    explanations = explainer.explain(X_te[:4], threshold=0.95)
    auto = AnchorTabular(model.predict_proba, names, seed=0).fit(X_tr).explain(X_te[:4], threshold=0.95)
    assert sum(e.raw["success"] for e in auto) > sum(e.raw["success"] for e in explanations)


def test_auto_sampling_judges_an_anchor_with_many_rows_on_real_rows_only(adult):
    X, names, cats = adult
    predict = adult_rule(cats[2].index("Married-civ-spouse"))
    explainer = AnchorTabular(predict, names, cats, seed=0).fit(X)
    exp = explainer.explain(X[np.flatnonzero(predict(X)[:, 1] == 1)[0]], threshold=0.95)
    # Every sample of this anchor was a real training row: the rows satisfying it outnumber the samples drawn.
    assert exp.raw["success"] and exp.precision == 1.0
    assert exp.raw["search"]["n_predicted_rows"] <= len(X) + 1
