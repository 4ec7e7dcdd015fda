"""Specification of engine.ad.attacks: FGSM and PGD stay in the epsilon ball and the data range, and hurt accuracy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine.ad.attacks import AttackResult, attack, fgsm, harmfulness, perturbation_norms, pgd
from engine.classifiers import build_classifier, predict_proba, train_classifier
from engine.errors import DataError
from tests.unit.helpers import blobs

TOL = 1e-5


@pytest.fixture(scope="module")
def data():
    return blobs(seed=0), blobs(n=90, seed=1)


@pytest.fixture(scope="module")
def classifier(data):
    (X, y), (X_test, y_test) = data
    net = build_classifier(8, 3, hidden=(32,), seed=0)
    _, metrics = train_classifier(net, X, y, epochs=25, batch_size=32, seed=0, validation=(X_test, y_test))
    assert metrics["val_accuracy"] > 0.95
    return net


def accuracy(net, X, y):
    return float(np.mean(predict_proba(net, X).argmax(axis=1) == y))


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm, epsilon", [("inf", 0.15), ("2", 0.5)])
def test_perturbation_stays_in_the_ball_and_the_data_range_and_lowers_accuracy(classifier, data, method, norm, epsilon):
    _, (X, y) = data
    kwargs = {"seed": 0, "steps": 10} if method == "pgd" else {}
    X_adv = (fgsm if method == "fgsm" else pgd)(classifier, X, epsilon=epsilon, norm=norm, clip_min=0.0, clip_max=1.0,
                                                **kwargs)
    assert X_adv.shape == X.shape and X_adv.dtype == np.float32
    linf, l2 = perturbation_norms(X, X_adv)
    assert (linf if norm == "inf" else l2).max() <= epsilon + TOL
    assert X_adv.min() >= 0.0 and X_adv.max() <= 1.0
    assert accuracy(classifier, X_adv, y) < accuracy(classifier, X, y) - 0.3


def test_pgd_is_at_least_as_strong_as_fgsm(classifier, data):
    _, (X, y) = data
    acc_fgsm = accuracy(classifier, fgsm(classifier, X, epsilon=0.1, clip_min=0, clip_max=1), y)
    acc_pgd = accuracy(classifier, pgd(classifier, X, epsilon=0.1, steps=20, seed=0, clip_min=0, clip_max=1), y)
    assert acc_pgd <= acc_fgsm


def test_fgsm_linf_moves_every_free_coordinate_by_exactly_epsilon(classifier, data):
    _, (X, _) = data
    X_adv = fgsm(classifier, X, epsilon=0.05)  # no clipping
    np.testing.assert_allclose(np.abs(X_adv - X), 0.05, atol=1e-6)


def test_per_feature_clip_bounds_are_honoured(classifier, data):
    _, (X, _) = data
    lo = np.full(8, 0.0, "float32")
    hi = np.full(8, 1.0, "float32")
    hi[0], lo[1] = 0.5, 0.45
    X_in = np.clip(X, lo, hi)
    X_adv = pgd(classifier, X_in, epsilon=0.3, steps=5, seed=0, clip_min=lo, clip_max=hi)
    assert np.all(X_adv >= lo - TOL) and np.all(X_adv <= hi + TOL)


def test_inputs_outside_the_range_never_move_further_than_epsilon(classifier, data):
    _, (X, _) = data
    X_out = X.copy()
    X_out[:, 0] = 1.5  # already above clip_max
    for norm in ("inf", "2"):
        X_adv = pgd(classifier, X_out, epsilon=0.1, norm=norm, steps=5, seed=0, clip_min=0.0, clip_max=1.0)
        linf, l2 = perturbation_norms(X_out, X_adv)
        assert (linf if norm == "inf" else l2).max() <= 0.1 + TOL


def test_targeted_pgd_reaches_the_target_class(classifier, data):
    _, (X, y) = data
    target = (y + 1) % 3
    X_adv = pgd(classifier, X, epsilon=0.4, steps=30, targeted=True, target=target, seed=0, clip_min=0, clip_max=1)
    assert np.mean(predict_proba(classifier, X_adv).argmax(axis=1) == target) > 0.9
    assert np.abs(X_adv - X).max() <= 0.4 + TOL


def test_one_target_for_every_row_is_accepted(classifier, data):
    _, (X, _) = data
    X_adv = fgsm(classifier, X, epsilon=0.3, targeted=True, target=2, clip_min=0, clip_max=1)
    pred_clean = predict_proba(classifier, X).argmax(axis=1)
    pred_adv = predict_proba(classifier, X_adv).argmax(axis=1)
    assert np.mean(pred_adv == 2) > np.mean(pred_clean == 2)


def test_pgd_random_start_is_reproducible_under_a_seed(classifier, data):
    _, (X, _) = data
    a, b, c = (pgd(classifier, X, epsilon=0.1, steps=2, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = pgd(classifier, X, epsilon=0.1, steps=2, random_start=False)
    np.testing.assert_array_equal(d, pgd(classifier, X, epsilon=0.1, steps=2, random_start=False, seed=9))


def test_results_do_not_depend_on_the_batch_size(classifier, data):
    _, (X, _) = data
    np.testing.assert_allclose(fgsm(classifier, X, epsilon=0.1, batch_size=7), fgsm(classifier, X, epsilon=0.1),
                               atol=1e-6)


def test_default_labels_are_the_classifiers_own_predictions(classifier, data):
    _, (X, _) = data
    pred = predict_proba(classifier, X).argmax(axis=1)
    np.testing.assert_array_equal(fgsm(classifier, X, epsilon=0.1), fgsm(classifier, X, pred, epsilon=0.1))


def _logit_twin(net):
    """The same network with a linear output layer: it returns the logits of ``net``."""
    layers = [keras.Input((8,))]
    for layer in net.layers[:-1]:
        layers.append(keras.layers.Dense(layer.units, activation=layer.activation))
    layers.append(keras.layers.Dense(net.layers[-1].units))
    twin = keras.Sequential(layers)
    twin.set_weights(net.get_weights())
    return twin


def test_a_classifier_returning_logits_is_attacked_like_its_softmax_twin(classifier, data):
    _, (X, y) = data
    twin = _logit_twin(classifier)
    X_adv_logits = fgsm(twin, X, epsilon=0.1, clip_min=0, clip_max=1)
    X_adv_probs = fgsm(classifier, X, epsilon=0.1, clip_min=0, clip_max=1)
    assert np.mean(np.isclose(X_adv_logits, X_adv_probs, atol=1e-6)) > 0.99
    assert accuracy(twin, X_adv_logits, y) < accuracy(twin, X, y) - 0.3


def test_a_single_sigmoid_output_binary_classifier_is_attacked_on_both_classes():
    X, y = blobs(k=2)
    net = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(0)),
        keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.GlorotUniform(1)),
    ])
    from engine.training import train
    train(net, lambda t, o: keras.losses.binary_crossentropy(t, o), X, y.astype("float32")[:, None], epochs=40,
          batch_size=32, seed=0)
    pred_clean = predict_proba(net, X).argmax(axis=1)
    assert np.mean(pred_clean == y) > 0.95
    X_adv = pgd(net, X, epsilon=0.3, steps=10, seed=0, clip_min=0, clip_max=1)
    pred_adv = predict_proba(net, X_adv).argmax(axis=1)
    # Both classes are pushed across the boundary, not only the positive one.
    assert np.mean(pred_adv[y == 0] != 0) > 0.5 and np.mean(pred_adv[y == 1] != 1) > 0.5


def test_image_shaped_inputs_are_attacked_per_instance():
    net = keras.Sequential([
        keras.Input((4, 4, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(0)),
    ])
    X = np.random.default_rng(0).uniform(size=(6, 4, 4, 1)).astype("float32")
    X_adv = pgd(net, X, epsilon=0.5, norm="2", steps=3, seed=0, clip_min=0, clip_max=1)
    assert X_adv.shape == X.shape
    assert perturbation_norms(X, X_adv)[1].max() <= 0.5 + TOL


@pytest.mark.parametrize("kwargs, error, message", [
    ({"epsilon": 0.0}, ValueError, "epsilon"),
    ({"epsilon": float("nan")}, ValueError, "epsilon"),
    ({"epsilon": 0.1, "norm": "1"}, ValueError, "norm"),
    ({"epsilon": 0.1, "targeted": True}, ValueError, "target="),
    ({"epsilon": 0.1, "targeted": True, "target": 3}, DataError, "0..2"),
    ({"epsilon": 0.1, "steps": 0}, ValueError, "steps"),
    ({"epsilon": 0.1, "clip_min": 1.0, "clip_max": 0.0}, ValueError, "clip_min"),
    ({"epsilon": 0.1, "clip_min": np.zeros(3)}, ValueError, "clip bound"),
])
def test_bad_attack_arguments_get_clear_errors(classifier, data, kwargs, error, message):
    _, (X, _) = data
    with pytest.raises(error, match=message):
        pgd(classifier, X[:5], **kwargs)


def test_bad_inputs_get_data_errors(classifier, data):
    _, (X, _) = data
    with pytest.raises(DataError, match="shape"):
        fgsm(classifier, X[:, :5], epsilon=0.1)
    bad = X[:5].copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fgsm(classifier, bad, epsilon=0.1)
    with pytest.raises(DataError, match="one per row"):
        fgsm(classifier, X[:5], np.array([0, 1]), epsilon=0.1)
    with pytest.raises(TypeError, match="Keras classifier"):
        fgsm(lambda x: x, X[:5], epsilon=0.1)


def test_harmfulness_says_which_predictions_the_attack_changed(classifier, data):
    _, (X, y) = data
    X_adv = pgd(classifier, X, epsilon=0.15, steps=10, seed=0, clip_min=0, clip_max=1)
    result = harmfulness(classifier, X, X_adv, y)
    assert isinstance(result, AttackResult)
    np.testing.assert_array_equal(result.harmful, result.pred_adv != result.pred_clean)
    assert result.harmful_rate == pytest.approx(np.mean(result.harmful))
    assert result.accuracy_clean == pytest.approx(accuracy(classifier, X, y))
    assert result.accuracy_adv == pytest.approx(accuracy(classifier, X_adv, y))
    assert result.proba_adv.shape == (len(X), 3) and result.linf.max() <= 0.15 + TOL
    unchanged = harmfulness(classifier, X, X)
    assert unchanged.harmful_rate == 0.0 and unchanged.accuracy_clean is None


def test_harmfulness_needs_matching_arrays(classifier, data):
    _, (X, _) = data
    with pytest.raises(DataError, match="matching rows"):
        harmfulness(classifier, X, X[:-1])


def test_attack_runs_and_summarises_in_one_call(classifier, data):
    _, (X, y) = data
    result = attack(classifier, X, y, method="pgd", epsilon=0.15, steps=10, seed=0, clip_min=0, clip_max=1)
    summary = result.summary()
    assert summary["method"] == "pgd" and summary["epsilon"] == 0.15 and summary["n"] == len(X)
    assert summary["accuracy_adv"] < summary["accuracy_clean"]
    assert summary["linf_max"] <= 0.15 + TOL
    with pytest.raises(ValueError, match="'fgsm' or 'pgd'"):
        attack(classifier, X, method="cw", epsilon=0.1)
