"""CEM: pertinent negatives and positives on a softmax regression of standardised iris."""

import keras
import numpy as np
import pytest

from engine.datasets import load_dataset
from engine.errors import DataError, NotFittedError, PredictorCallError, PredictorReturnTypeError, TrainingCancelled
from engine.explainers import CEM
from engine.explanation import Explanation
from engine.training import CancelToken, train

SETTINGS = dict(kappa=0.2, beta=0.1, c_init=10.0, c_steps=4, max_iterations=300)


@pytest.fixture(scope="module")
def iris():
    frame = load_dataset("iris")
    X = frame.drop(columns="species").to_numpy(np.float32)
    y = frame["species"].astype("category").cat.codes.to_numpy(np.int64)
    order = np.random.default_rng(0).permutation(len(X))
    train_idx, test_idx = order[:100], order[100:]
    mean, std = X[train_idx].mean(0), X[train_idx].std(0)
    X = (X - mean) / std
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=0)),
    ])
    train(model, keras.losses.sparse_categorical_crossentropy, X[train_idx], y[train_idx], epochs=40,
          batch_size=20, seed=0, optimizer=keras.optimizers.SGD(0.3))
    weights, bias = (w.astype(np.float64) for w in model.layers[0].get_weights())

    def predict_fn(x):  # the same classifier as a black box
        logits = np.asarray(x, np.float64) @ weights + bias
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    x_train, x_test = X[train_idx], X[test_idx]
    assert (predict_fn(x_test).argmax(1) == y[test_idx]).mean() > 0.85
    return {"model": model, "predict_fn": predict_fn, "x_train": x_train, "x_test": x_test,
            "range": (x_train.min(0), x_train.max(0)), "median": np.median(x_train, axis=0)}


@pytest.fixture(scope="module")
def pn_instances(iris):
    """Four test rows of the middle class (versicolor), which PNs can leave in either direction."""
    rows = iris["x_test"][iris["predict_fn"](iris["x_test"]).argmax(1) == 1][:4]
    assert len(rows) == 4
    return rows


def _cem(iris, mode, predictor=None, **kwargs):
    settings = {**SETTINGS, **kwargs}
    cem = CEM(predictor if predictor is not None else iris["model"], mode=mode, shape=(1, 4),
              feature_range=iris["range"], **settings)
    return cem.fit(iris["x_train"])


def test_pn_changes_the_class_moves_away_from_no_info_and_stays_in_range(iris, pn_instances):
    exp = _cem(iris, "PN").explain(pn_instances)
    lo, hi = iris["range"]
    assert exp.found.all()
    assert np.all(exp.PN_pred != exp.X_pred)
    assert np.array_equal(iris["model"].predict(exp.PN, verbose=0).argmax(1), exp.PN_pred)
    assert np.all(exp.PN >= lo - 1e-6) and np.all(exp.PN <= hi + 1e-6)
    # features only move away from the no-information value (the training median)
    no_info, inside = iris["median"], np.clip(pn_instances, lo, hi)  # a test row may lie outside the range
    assert np.all(np.abs(exp.PN - no_info) >= np.abs(inside - no_info) - 1e-5)
    assert np.all((np.abs(exp.delta) > 1e-6).sum(1) < 4)  # sparse: not every feature changes
    assert exp.PP is None and exp.PP_pred is None


def test_pp_keeps_the_class_with_less_evidence(iris):
    x = iris["x_test"][:6]
    exp = _cem(iris, "PP").explain(x)
    assert exp.found.all()
    assert np.array_equal(exp.PP_pred, exp.X_pred)
    assert np.array_equal(iris["model"].predict(exp.PP, verbose=0).argmax(1), exp.X_pred)
    no_info = iris["median"]
    # each PP feature lies between the no-information value and the original value
    assert np.all(exp.PP >= np.minimum(x, no_info) - 1e-6) and np.all(exp.PP <= np.maximum(x, no_info) + 1e-6)
    assert np.all(np.abs(exp.PP - no_info).sum(1) < np.abs(x - no_info).sum(1))


def test_pn_that_cannot_exist_is_reported_as_not_found(iris):
    def always_setosa(x):
        return np.tile([0.9, 0.05, 0.05], (len(x), 1))

    exp = _cem(iris, "PN", predictor=always_setosa, c_steps=2, max_iterations=20).explain(iris["x_test"][0])
    assert exp.PN is None and exp.PN_pred is None and not exp.found[0]
    assert exp.X_pred == 0 and isinstance(exp.X_pred, int)
    assert np.isnan(exp.PN_proba).all() and np.isnan(exp.delta).all()


def test_pn_of_a_row_outside_feature_range_stays_at_the_range_edge():
    def predict_fn(x):  # class 1 once the second feature passes 1
        logits = np.stack([np.zeros(len(x)), 4.0 * (np.asarray(x, np.float64)[:, 1] - 1.0)], axis=1)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    x = np.array([[5.0, 0.0]], np.float32)  # the first feature is beyond the range's maximum 3
    cem = CEM(predict_fn, mode="PN", shape=(1, 2), feature_range=(-3.0, 3.0), no_info_val=0.0, kappa=0.1,
              c_steps=3, max_iterations=200)
    exp = cem.explain(x)
    assert exp.found[0] and exp.PN_pred == 1
    assert exp.PN[0, 0] == pytest.approx(3.0)  # clipped into the range, not thrown to the far side of 0
    assert 1.0 < exp.PN[0, 1] <= 3.0


def _class_1_below_minus_one():
    """Two features, two classes; class 1 once the first feature drops below -1 (the second is irrelevant)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.layers[0].set_weights([np.array([[0.0, -4.0], [0.0, 0.0]], np.float32), np.array([0.0, -4.0], np.float32)])

    def predict_fn(x):
        logits = np.stack([np.zeros(len(x)), -4.0 * (np.asarray(x, np.float64)[:, 0] + 1.0)], axis=1)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return model, predict_fn


@pytest.mark.parametrize("white_box", [True, False])
def test_pn_that_needs_a_feature_to_cross_the_no_info_value_is_found(white_box):
    """x0 = (2, 0.5), n = 0: the only PNs put the first feature at or below -2, across the gap (-2, 2).

    One gradient step moves a feature by at most learning_rate_init * clip = 1 (2 are needed to get past n), so an
    eagerly projected search always falls back to x0's side and finds nothing; the lazily projected state crosses
    the gap over several steps.
    """
    model, predict_fn = _class_1_below_minus_one()
    x = np.array([[2.0, 0.5], [-0.5, 0.5]], np.float32)  # the second row needs no crossing (its PN is below -1.1)
    cem = CEM(model if white_box else predict_fn, mode="PN", shape=(1, 2), feature_range=(-3.0, 3.0),
              no_info_val=0.0, kappa=0.2, beta=0.1, c_init=1e4, c_steps=3, max_iterations=300)
    exp = cem.explain(x)
    assert exp.found.all() and np.array_equal(exp.X_pred, [0, 0]) and np.array_equal(exp.PN_pred, [1, 1])
    assert np.array_equal(predict_fn(exp.PN).argmax(1), [1, 1])
    # features only move away from n = 0, and stay in the range
    assert np.all(np.abs(exp.PN) >= np.abs(x) - 1e-6) and np.all(np.abs(exp.PN) <= 3.0 + 1e-6)
    # the smallest PN of the first row is the far end of the gap: the first feature at -2, the second unchanged
    assert exp.PN[0, 0] == pytest.approx(-2.0, abs=0.05) and exp.PN[0, 1] == pytest.approx(0.5, abs=1e-6)
    assert -1.5 < exp.PN[1, 0] < -1.1 and exp.PN[1, 1] == pytest.approx(0.5, abs=1e-6)
    # the same result one row at a time
    single = cem.explain(x[:1])
    assert single.found[0]
    np.testing.assert_allclose(single.PN, exp.PN[:1], atol=1e-3)


def test_pn_far_end_on_the_range_edge_is_reachable_despite_float_rounding():
    """n half-way between the range's ends and x0 on the upper end: the PN's far end is the lower end exactly, but
    n - |x0 - n| misses it by one float32 rounding step; it must still count as inside the range."""
    n, x0, lo = np.float32(0.13250971), np.float32(1.712096), np.float32(-1.4470764)
    assert n - abs(x0 - n) < lo  # the rounding this test is about

    _, predict_fn = _class_1_below_minus_one()
    cem = CEM(predict_fn, mode="PN", shape=(1, 2), feature_range=(np.array([lo, -3.0]), np.array([x0, 3.0])),
              no_info_val=np.array([n, 0.0]), kappa=0.2, c_init=1e4, c_steps=3, max_iterations=300)
    exp = cem.explain(np.array([[x0, 0.5]], np.float32))
    assert exp.found[0] and exp.PN_pred == 1
    assert exp.PN[0, 0] == lo and exp.PN[0, 1] == pytest.approx(0.5)


def test_autoencoder_term_is_used_with_model_and_black_box(iris):
    x = iris["x_test"][:2]
    ae = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, kernel_initializer="zeros")])  # AE(z) = 0
    settings = dict(c_steps=2, max_iterations=150, gamma=5.0, ae_model=ae)
    plain = _cem(iris, "PP", c_steps=2, max_iterations=150).explain(x)
    white = _cem(iris, "PP", **settings).explain(x)
    black = _cem(iris, "PP", predictor=iris["predict_fn"], **settings).explain(x)
    plain_black = _cem(iris, "PP", predictor=iris["predict_fn"], c_steps=2, max_iterations=150).explain(x)
    assert white.found.all() and black.found.all()
    # gamma * ||AE(z) - z||^2 pulls z towards 0, in both gradient paths
    assert np.abs(white.PP - plain.PP).max() > 0.05
    assert np.abs(black.PP - plain_black.PP).max() > 0.05
    np.testing.assert_allclose(white.PP, black.PP, atol=0.1)


def test_black_box_finds_pn_and_pp_on_iris(iris, pn_instances):
    """The reference's black-box PP gradient is zero where the PP loss is active, so it finds no PP."""
    pn = _cem(iris, "PN", predictor=iris["predict_fn"]).explain(pn_instances)
    assert pn.found.all() and np.all(pn.PN_pred != pn.X_pred)
    assert np.abs(pn.grads_num).sum() > 0
    x = iris["x_test"][:4]
    pp = _cem(iris, "PP", predictor=iris["predict_fn"]).explain(x)
    assert pp.found.all() and np.array_equal(pp.PP_pred, pp.X_pred)
    assert np.array_equal(iris["predict_fn"](pp.PP).argmax(1), pp.X_pred)
    no_info = iris["median"]
    assert np.all(np.abs(pp.PP - no_info).sum(1) < np.abs(x - no_info).sum(1))
    assert pp.meta["params"]["gradients"] == "numerical"


def test_numerical_gradient_matches_autodiff_of_the_hinge(iris):
    import tensorflow as tf

    cem = _cem(iris, "PP", predictor=iris["predict_fn"], kappa=0.0)
    x = iris["median"][None] + np.array([[0.3, -0.2, 0.1, 0.2]], np.float32)
    onehot = np.eye(3)[[iris["predict_fn"](x).argmin()]]  # explain a class x does not have: PP loss active
    numerical = cem.get_gradients(x, onehot)
    z = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(z)
        proba = iris["model"](z)
        target = tf.reduce_sum(proba * onehot, 1)
        other = tf.reduce_max(proba * (1 - onehot) - onehot * 1e4, 1)
        loss = other - target
    assert float(loss[0]) > 0  # the PP loss is active here: the gradient must not vanish
    np.testing.assert_allclose(numerical, tape.gradient(loss, z).numpy(), atol=2e-3)


@pytest.mark.parametrize("mode", ["PN", "PP"])
def test_batched_results_match_one_at_a_time(iris, pn_instances, mode):
    x = pn_instances if mode == "PN" else iris["x_test"][:4]
    cem = _cem(iris, mode, c_init=1.0, c_steps=3, max_iterations=200)
    batched = cem.explain(x)
    singles = [cem.explain(row[None]) for row in x]
    assert np.array_equal(batched.found, [s.found[0] for s in singles])
    single_preds = [-1 if s.data[f"{mode}_pred"] is None else s.data[f"{mode}_pred"] for s in singles]
    assert np.array_equal(batched.data[f"{mode}_pred"], single_preds)
    # one instance alone gives None where nothing was found; a batch gives a NaN row (delta is always an array).
    # The arithmetic per instance is the same; batched matrix products round differently in the last bits,
    # which hundreds of iterations can grow to ~1e-3.
    np.testing.assert_allclose(batched.delta, np.concatenate([s.delta for s in singles]), atol=1e-2)
    np.testing.assert_allclose(batched.best_c, [s.best_c[0] for s in singles])


def test_a_rows_result_does_not_depend_on_the_other_rows_of_its_batch(iris):
    x = iris["x_test"]
    cem = _cem(iris, "PP", c_steps=2, max_iterations=150)
    first = cem.explain(x[0:4])
    other_company = cem.explain(np.concatenate([x[10:13], x[0:1]]))  # same batch size, row 0 moved last
    np.testing.assert_array_equal(first.PP[0], other_company.PP[-1])  # bit for bit
    assert first.best_c[0] == other_company.best_c[-1]


def test_plain_graph_loop_agrees_with_the_xla_loop(iris):
    x = iris["x_test"][:3]
    xla = _cem(iris, "PP", c_steps=2, max_iterations=150).explain(x)
    graph = _cem(iris, "PP", c_steps=2, max_iterations=150, jit_compile=False).explain(x)
    assert np.array_equal(xla.found, graph.found) and np.array_equal(xla.PP_pred, graph.PP_pred)
    np.testing.assert_allclose(xla.PP, graph.PP, atol=1e-2)


def test_early_stop_ends_c_steps_sooner_and_keeps_batches_consistent(iris):
    x = iris["x_test"][:4]
    steps = []
    cem = _cem(iris, "PP", max_iterations=400, early_stop=30)
    batched = cem.explain(x, progress=steps.append)
    assert steps and all(s["iterations"] < 400 for s in steps)
    assert steps[-1]["c_step"] == SETTINGS["c_steps"] and steps[-1]["found"] == 4
    assert batched.found.all() and np.array_equal(batched.PP_pred, batched.X_pred)
    singles = np.concatenate([cem.explain(row[None]).PP for row in x])
    np.testing.assert_allclose(batched.PP, singles, atol=1e-2)


def test_explanation_payload_and_json_round_trip(iris, pn_instances):
    exp = _cem(iris, "PN", c_steps=3, max_iterations=200).explain(pn_instances[1:2])
    assert exp.found[0]
    for key in ("PN", "PP", "PN_pred", "PP_pred", "grads_graph", "grads_num", "X", "X_pred"):
        assert key in exp.data
    assert exp.meta["name"] == "CEM" and exp.meta["params"]["mode"] == "PN"
    assert exp.meta["explanations"] == ["local"]
    assert exp.X_proba.shape == (1, 3) and exp.PN_proba.shape == (1, 3)
    np.testing.assert_allclose(exp.PN_proba.sum(1), 1.0, atol=1e-5)
    restored = Explanation.from_json(exp.to_json())
    assert restored == exp
    np.testing.assert_array_equal(restored.PN, exp.PN)
    assert restored.PN_pred == exp.PN_pred and restored.PP is None


def test_explain_needs_fit_or_no_info_val(iris):
    cem = CEM(iris["model"], mode="PN", shape=(1, 4), max_iterations=10, c_steps=1)
    with pytest.raises(NotFittedError, match="fit"):
        cem.explain(iris["x_test"][:1])
    given = CEM(iris["predict_fn"], mode="PN", shape=(1, 4), max_iterations=10, c_steps=1, no_info_val=0.0)
    assert given.explain(iris["x_test"][:1]).X.shape == (1, 4)
    with pytest.raises(ValueError, match="no_info_type"):
        cem.fit(iris["x_train"], no_info_type="mode")


def test_bad_shapes_give_data_errors(iris):
    cem = _cem(iris, "PP", c_steps=1, max_iterations=10)
    with pytest.raises(DataError, match="shape"):
        cem.explain(np.zeros((2, 5), np.float32))
    with pytest.raises(DataError, match="NaN"):
        cem.explain(np.array([[0.0, np.nan, 0.0, 0.0]], np.float32))
    with pytest.raises(DataError, match="Y"):
        cem.explain(iris["x_test"][:2], Y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match="shape"):
        CEM(iris["model"], mode="PN", shape=(1, 4)).fit(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="mode"):
        CEM(iris["model"], mode="XX", shape=(1, 4), no_info_val=0.0).explain(iris["x_test"][:1])


def test_predictor_errors_are_clear(iris):
    def raises(x):
        raise RuntimeError("model offline")

    with pytest.raises(PredictorCallError, match="model offline"):
        CEM(raises, mode="PN", shape=(1, 4), no_info_val=0.0).explain(iris["x_test"][:1])
    with pytest.raises(PredictorReturnTypeError):
        CEM(lambda x: "setosa", mode="PN", shape=(1, 4), no_info_val=0.0).explain(iris["x_test"][:1])
    with pytest.raises(PredictorReturnTypeError, match="shape"):
        CEM(lambda x: np.ones((len(x) + 1, 3)) / 3, mode="PN", shape=(1, 4), no_info_val=0.0).explain(
            iris["x_test"][:1])
    with pytest.raises(PredictorReturnTypeError, match="NaN"):
        CEM(lambda x: np.full((len(x), 3), np.nan), mode="PN", shape=(1, 4), no_info_val=0.0).explain(
            iris["x_test"][:1])


def test_single_sigmoid_output_is_read_as_two_classes():
    w = np.array([2.0, -1.0])

    def predict_fn(x):
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) @ w)))[:, None]

    x = np.array([[1.0, 0.5]], np.float32)  # class 1 with p = 0.82
    cem = CEM(predict_fn, mode="PP", shape=(1, 2), feature_range=(-3.0, 3.0), no_info_val=0.0,
              c_steps=3, max_iterations=200)
    exp = cem.explain(x)
    assert exp.X_pred == 1 and exp.PP_pred == 1 and exp.X_proba.shape == (1, 2)
    assert abs(exp.PP[0, 0]) < abs(x[0, 0])


def test_loss_fn_and_perturb():
    cem = CEM(lambda x: x, mode="PN", shape=(1, 3), kappa=0.1)
    proba, onehot = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]), np.eye(3)[[0, 0]]
    np.testing.assert_allclose(cem.loss_fn(proba, onehot), [0.3, -0.1])
    cem.mode = "PP"
    np.testing.assert_allclose(cem.loss_fn(proba, onehot), [-0.1, 0.5])
    pos, neg = cem.perturb(proba, 0.01, proba=True)
    assert pos.shape == (6, 3)
    np.testing.assert_allclose(pos.sum(1), 1.0)
    np.testing.assert_allclose(neg.sum(1), 1.0)
    np.testing.assert_allclose(pos[0] - proba[0], [0.01, -0.005, -0.005])


def test_cancel_stops_before_the_next_c_step(iris):
    token = CancelToken()
    cem = _cem(iris, "PP", c_steps=3, max_iterations=20)
    with pytest.raises(TrainingCancelled):
        cem.explain(iris["x_test"][:1], progress=lambda step: token.cancel(), cancel=token)


def test_reset_predictor_switches_to_numerical_gradients(iris):
    cem = _cem(iris, "PP", c_steps=1, max_iterations=20)
    assert cem.is_white_box
    cem.reset_predictor(iris["predict_fn"])
    assert not cem.is_white_box
    assert cem.explain(iris["x_test"][:1]).meta["params"]["gradients"] == "numerical"


def _one_strong_feature():
    """Class 1 when ``z . (1, 0.9, 0.9, 0.9) > 0.6`` (class 0's logit is the constant 0.6), as a Keras model and a
    black box. The sparsest PP of x0 = (1, 1, 1, 1) with n = 0 keeps the first feature alone (at 0.6 or a bit more);
    the elastic net ``L2^2 + beta * L1`` spreads the evidence over all four features (its optimum keeps 0.18 of the
    first and 0.16 of each other), as the search without pruning does."""
    weights = np.array([[0.0, 1.0], [0.0, 0.9], [0.0, 0.9], [0.0, 0.9]], np.float32)
    bias = np.array([0.6, 0.0], np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.layers[0].set_weights([weights, bias])

    def predict_fn(x):
        logits = np.asarray(x, np.float64) @ weights + bias
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return model, predict_fn


@pytest.mark.parametrize("white_box", [True, False])
def test_pp_keeps_only_the_evidence_the_class_needs(white_box):
    model, predict_fn = _one_strong_feature()
    x = np.ones((1, 4), np.float32)
    settings = dict(mode="PP", shape=(1, 4), feature_range=(0.0, 1.0), no_info_val=0.0, kappa=0.0, beta=0.1,
                    c_init=1.0, c_steps=4, max_iterations=300)
    predictor = model if white_box else predict_fn
    searched = CEM(predictor, prune=False, **settings).explain(x)
    pruned = CEM(predictor, **settings).explain(x)  # prune=True is the default
    assert searched.found[0] and pruned.found[0] and pruned.PP_pred == 1
    assert (searched.PP[0] > 0).sum() > 1  # the elastic net alone spreads the evidence (over all 4 here)
    # the pruned PP keeps the first feature only, at the least value that keeps class 1 (up to the shrink grid)
    assert np.array_equal(pruned.PP[0, 1:], np.zeros(3, np.float32))
    assert 0.6 < pruned.PP[0, 0] <= 0.6 + 1 / 32 + 1e-6
    assert predict_fn(pruned.PP).argmax(1)[0] == 1
    assert pruned.meta["params"]["prune"] is True


def test_pruned_pp_is_never_larger_and_keeps_the_class(iris):
    x = iris["x_test"][:12]
    searched = _cem(iris, "PP", prune=False).explain(x)
    pruned = _cem(iris, "PP").explain(x)
    no_info = iris["median"]
    assert np.array_equal(searched.found, pruned.found) and np.array_equal(pruned.PP_pred, pruned.X_pred)
    f = pruned.found
    assert np.array_equal(iris["model"].predict(pruned.PP[f], verbose=0).argmax(1), pruned.X_pred[f])
    kept_s, kept_p = np.abs(searched.PP[f] - no_info), np.abs(pruned.PP[f] - no_info)
    assert np.all((kept_p > 0).sum(1) <= (kept_s > 0).sum(1))
    assert np.all(kept_p.sum(1) <= kept_s.sum(1) + 1e-5)
    # still between the no-information value and the instance
    assert np.all(pruned.PP >= np.minimum(x, no_info) - 1e-6) and np.all(pruned.PP <= np.maximum(x, no_info) + 1e-6)


def test_pns_are_not_pruned(iris, pn_instances):
    a = _cem(iris, "PN", c_steps=2, max_iterations=150).explain(pn_instances)
    b = _cem(iris, "PN", c_steps=2, max_iterations=150, prune=False).explain(pn_instances)
    np.testing.assert_array_equal(a.PN, b.PN)
    assert a.meta["params"]["prune"] is False


@pytest.mark.parametrize("mode", ["PN", "PP"])
def test_warm_up_compiles_what_explain_runs_and_keeps_the_settings(iris, mode):
    cem = _cem(iris, mode)
    settings = (cem.max_iterations, cem.c_steps)
    assert cem.warm_up(iris["x_test"][:1]) is cem
    assert (cem.max_iterations, cem.c_steps) == settings
    compiled = dict(cem._compiled)
    assert any(key[0] == "white" for key in compiled if isinstance(key, tuple))
    exp = cem.explain(iris["x_test"][1:2])
    assert dict(cem._compiled) == compiled  # the explanation traced and compiled nothing new
    assert exp.data[mode] is not None


def test_warm_up_of_a_black_box_does_nothing(iris):
    cem = _cem(iris, "PN", predictor=iris["predict_fn"])
    assert cem.warm_up(iris["x_test"][:1]) is cem and cem._compiled == {}
