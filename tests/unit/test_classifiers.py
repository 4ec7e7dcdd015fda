"""Specification of engine.classifiers: small classifiers, their training, label encoding and output handling."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine.classifiers import (
    LabelEncoder,
    accuracy,
    build_classifier,
    log_probabilities,
    output_kind,
    predict_proba,
    train_classifier,
)
from engine.errors import DataError
from engine.nets import build_sequential, describe_sequential
from engine.training import TrainingEvent


def blobs(n=240, d=8, k=3, seed=0):
    """k well separated classes in [0, 1]^d (fixed centres; ``seed`` draws the noise)."""
    centres = np.random.default_rng(100).uniform(0.2, 0.8, size=(k, d))
    y = np.arange(n) % k
    X = np.clip(centres[y] + np.random.default_rng(seed).normal(scale=0.05, size=(n, d)), 0, 1).astype("float32")
    return X, y


# ---------------------------------------------------------------- building


def test_mlp_outputs_a_probability_per_class():
    net = build_classifier(8, 3, seed=0)
    proba = np.asarray(net(np.zeros((4, 8), "float32")))
    assert proba.shape == (4, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_reshapes_flat_pixels_to_the_image():
    net = build_classifier(64, 10, "cnn", image_shape=(8, 8), seed=0)
    assert net.output_shape == (None, 10)
    assert [type(layer).__name__ for layer in net.layers][:2] == ["Reshape", "Conv2D"]
    assert net.layers[0].target_shape == (8, 8, 1)


def test_cnn_assumes_a_square_image_when_no_shape_is_given():
    assert build_classifier(16, 2, "cnn", seed=0).layers[0].target_shape == (4, 4, 1)
    with pytest.raises(ValueError, match="image_shape"):
        build_classifier(10, 2, "cnn")


def test_image_shape_must_match_the_number_of_features():
    with pytest.raises(ValueError, match="64 pixels"):
        build_classifier(60, 2, "cnn", image_shape=(8, 8))


@pytest.mark.parametrize("kwargs, message", [
    ({"n_features": 4, "n_classes": 1}, "at least 2 classes"),
    ({"n_features": 0, "n_classes": 2}, "n_features"),
    ({"n_features": 4, "n_classes": 2, "kind": "rnn"}, "'mlp' or 'cnn'"),
    ({"n_features": 4, "n_classes": 2, "dropout": 1.0}, "dropout"),
])
def test_bad_builder_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_classifier(**kwargs)


def test_seed_makes_the_initial_weights_reproducible():
    a, b, c = (build_classifier(8, 3, seed=s) for s in (1, 1, 2))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_built_classifiers_can_be_archived(kind):
    net = build_classifier(16, 3, kind, dropout=0.1, seed=0)
    rebuilt = build_sequential(describe_sequential(net))
    rebuilt.set_weights(net.get_weights())
    x = np.random.default_rng(0).uniform(size=(5, 16)).astype("float32")
    np.testing.assert_allclose(np.asarray(rebuilt(x)), np.asarray(net(x)), rtol=1e-5)


# ---------------------------------------------------------------- training


def test_training_learns_separable_classes_and_reports_accuracy():
    X, y = blobs()
    events: list[TrainingEvent] = []
    net = build_classifier(8, 3, seed=0)
    history, metrics = train_classifier(net, X, y, epochs=15, batch_size=32, seed=0,
                                        validation=blobs(seed=1), progress=events.append)
    assert metrics["train_accuracy"] > 0.95 and metrics["val_accuracy"] > 0.95
    assert metrics["n_classes"] == 3
    assert len(history.metrics["accuracy"]) == history.epochs_run == 15
    assert history.loss[-1] < history.loss[0]
    assert any(e.kind == "batch" and "accuracy" in e.metrics for e in events)


def test_cnn_trains_on_flat_pixels():
    X, y = blobs(d=16)
    net = build_classifier(16, 3, "cnn", seed=0)
    _, metrics = train_classifier(net, X, y, epochs=10, batch_size=32, seed=0)
    assert metrics["train_accuracy"] > 0.9


@pytest.mark.parametrize("labels, message", [
    (np.array(["a", "b"] * 120), "LabelEncoder"),
    (np.arange(240) % 5, "only 3 outputs"),
    (-(np.arange(240) % 3), "negative"),
    (np.zeros(10, int), "one integer label per row"),
])
def test_bad_labels_get_a_clear_error(labels, message):
    X, _ = blobs()
    with pytest.raises(DataError, match=message):
        train_classifier(build_classifier(8, 3, seed=0), X, labels, epochs=1)


def test_wrong_feature_count_is_a_data_error():
    X, y = blobs()
    with pytest.raises(DataError, match="features"):
        train_classifier(build_classifier(5, 3, seed=0), X, y, epochs=1)


# ---------------------------------------------------------------- labels


def test_label_encoder_round_trips_and_keeps_sorted_names():
    enc = LabelEncoder()
    codes = enc.fit_transform(["malignant", "benign", "benign", "malignant"])
    assert enc.classes_ == ["benign", "malignant"] and enc.n_classes == 2
    assert codes.tolist() == [1, 0, 0, 1]
    assert enc.inverse_transform(codes) == ["malignant", "benign", "benign", "malignant"]


def test_label_encoder_handles_numbers_and_mixed_types():
    assert LabelEncoder().fit(np.array([3, 1, 2])).classes_ == [1, 2, 3]
    enc = LabelEncoder().fit([1, "a", 2.5])
    assert enc.transform(enc.classes_).tolist() == [0, 1, 2]


def test_label_encoder_rejects_unseen_missing_and_out_of_range():
    enc = LabelEncoder().fit(["x", "y"])
    with pytest.raises(DataError, match="not seen"):
        enc.transform(["z"])
    with pytest.raises(DataError, match="missing"):
        LabelEncoder().fit(["x", None])
    with pytest.raises(DataError, match="missing"):
        LabelEncoder().fit([1.0, float("nan")])
    with pytest.raises(DataError, match="0..1"):
        enc.inverse_transform([2])
    with pytest.raises(DataError, match="not fitted"):
        LabelEncoder().transform(["x"])


# ---------------------------------------------------------------- any classifier's outputs


def _dense(units, activation, seed=0):
    init = keras.initializers.GlorotUniform(seed)
    layer = keras.layers.Dense(units, activation=activation, kernel_initializer=init)
    return keras.Sequential([keras.Input((4,)), layer])


def test_output_kind_tells_probabilities_from_logits():
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32") * 3
    assert output_kind(_dense(3, "softmax"), x) == "probabilities"
    assert output_kind(_dense(3, None), x) == "logits"
    assert output_kind(_dense(1, "sigmoid"), x) == "probabilities"
    assert output_kind(_dense(1, None), x) == "logits"


def test_log_probabilities_of_logits_is_log_softmax():
    z = np.array([[1.0, 2.0, -1.0]], "float32")
    expected = z - np.log(np.exp(z).sum())
    np.testing.assert_allclose(np.asarray(log_probabilities(z, "logits")), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(log_probabilities(np.exp(expected), "probabilities")), expected, rtol=1e-4)


def test_a_single_sigmoid_column_becomes_two_classes():
    p = np.array([[0.2], [0.9]], "float32")
    np.testing.assert_allclose(np.exp(np.asarray(log_probabilities(p, "probabilities"))), [[0.8, 0.2], [0.1, 0.9]],
                               rtol=1e-5)
    z = np.log(p / (1 - p))
    np.testing.assert_allclose(np.exp(np.asarray(log_probabilities(z, "logits"))), [[0.8, 0.2], [0.1, 0.9]], rtol=1e-4)
    proba = predict_proba(_dense(1, "sigmoid"), np.ones((3, 4), "float32"))
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_predict_proba_is_the_same_in_any_batch_size_and_turns_logits_into_probabilities():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype("float32")
    net = _dense(3, None)
    small, whole = predict_proba(net, X, batch_size=7), predict_proba(net, X, batch_size=10_000)
    np.testing.assert_allclose(small, whole, rtol=1e-6)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-5)
    z = np.asarray(net(X))
    np.testing.assert_allclose(whole, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), rtol=1e-5)


def test_accuracy_counts_matching_predictions():
    net = _dense(2, "softmax")
    X = np.random.default_rng(1).normal(size=(20, 4)).astype("float32")
    pred = predict_proba(net, X).argmax(axis=1)
    assert accuracy(net, X, pred) == 1.0
    assert accuracy(net, X, 1 - pred) == 0.0
