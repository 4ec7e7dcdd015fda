"""Network specs (engine.nets): JSON descriptions ↔ keras.Sequential, allow-listed layers only."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from engine.errors import ArchiveError
from engine.nets import build_sequential, describe_sequential, mlp


def _same_weights_shapes(a, b):
    return [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]


def test_mlp_shapes_and_activations():
    net = mlp(10, [8, 4], 3, activation="relu", output_activation="softmax", name="clf")
    assert net.name == "clf"
    assert net.output_shape == (None, 3)
    assert [layer.units for layer in net.layers] == [8, 4, 3]
    assert [layer.activation.__name__ for layer in net.layers] == ["relu", "relu", "softmax"]


def test_mlp_with_one_seed_is_identical_and_with_another_is_not():
    a, b, c = mlp(5, [6], 2, seed=4), mlp(5, [6], 2, seed=4), mlp(5, [6], 2, seed=5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    # Per-layer seeds: two equal-shaped layers of one network do not get the same kernel.
    deep = mlp(4, [4, 4], 4, seed=0)
    assert not np.array_equal(deep.get_weights()[0], deep.get_weights()[2])


def test_describe_then_build_gives_the_same_architecture_as_json():
    net = mlp(6, [5, 3], 2, activation="tanh", output_activation="sigmoid", seed=0)
    spec = describe_sequential(net)
    assert json.loads(json.dumps(spec)) == spec  # plain JSON
    assert spec["input_shape"] == [6]
    assert [(layer["class"], layer["config"]["units"], layer["config"]["activation"]) for layer in spec["layers"]] == [
        ("Dense", 5, "tanh"), ("Dense", 3, "tanh"), ("Dense", 2, "sigmoid")]
    rebuilt = build_sequential(spec, name="again")
    assert rebuilt.name == "again" and rebuilt.output_shape == (None, 2)
    assert _same_weights_shapes(net, rebuilt)
    rebuilt.set_weights(net.get_weights())
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(rebuilt(x).numpy(), net(x).numpy(), rtol=1e-6)
    assert describe_sequential(rebuilt) == spec


def test_recurrent_normalisation_and_dropout_layers_round_trip():
    net = keras.Sequential([
        keras.Input((7, 3)),
        keras.layers.LSTM(5, return_sequences=True),
        keras.layers.GRU(4),
        keras.layers.LayerNormalization(),
        keras.layers.Dropout(0.25),
        keras.layers.BatchNormalization(momentum=0.9),
        keras.layers.Activation("relu"),
        keras.layers.Dense(2),
    ])
    spec = describe_sequential(net)
    assert [layer["class"] for layer in spec["layers"]] == [
        "LSTM", "GRU", "LayerNormalization", "Dropout", "BatchNormalization", "Activation", "Dense"]
    assert spec["layers"][0]["config"]["return_sequences"] is True
    assert spec["layers"][3]["config"]["rate"] == 0.25
    rebuilt = build_sequential(spec)
    assert rebuilt.output_shape == (None, 2) and _same_weights_shapes(net, rebuilt)


def test_convolutional_and_reshape_layers_round_trip():
    net = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(16),
        keras.layers.Reshape((4, 4, 1)),
        keras.layers.Conv2DTranspose(1, 3, padding="same"),
    ])
    rebuilt = build_sequential(describe_sequential(net))
    assert rebuilt.output_shape == net.output_shape and _same_weights_shapes(net, rebuilt)


def test_models_that_cannot_be_described_are_refused():
    functional_in = keras.Input((3,))
    functional = keras.Model(functional_in, keras.layers.Dense(2)(functional_in))
    with pytest.raises(ArchiveError, match="only keras.Sequential networks can be saved, got Functional"):
        describe_sequential(functional)
    with pytest.raises(ArchiveError, match="the network is not built yet"):
        describe_sequential(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ArchiveError, match="layer type Lambda is not supported in archives"):
        describe_sequential(keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2)]))


def test_a_subclassed_allowed_layer_is_refused():
    class SneakyDense(keras.layers.Dense):
        pass

    SneakyDense.__name__ = "Dense"
    net = keras.Sequential([keras.Input((3,)), SneakyDense(2)])
    with pytest.raises(ArchiveError, match="layer type Dense is not supported"):
        describe_sequential(net)


def triple(t):
    return t * 3


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_a_lambda_activation_is_refused_not_saved_as_linear():
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation=lambda t: t * 3)])
    with pytest.raises(ArchiveError, match="of a Dense layer is not supported in archives"):
        describe_sequential(net)


def test_a_named_custom_activation_is_refused_with_an_archive_error():
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation=triple)])
    with pytest.raises(ArchiveError, match="of a Dense layer is not supported in archives"):
        describe_sequential(net)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"input_shape": [3], "layers": [{"class": "Lambda", "config": {}}]}, "layer type 'Lambda', which is not allowed"),
        ({"input_shape": [3], "layers": [{"class": "Dense", "config": {"units": 2, "activation": "eval"}}]},
         "activation 'eval' of a Dense layer is not supported"),
        ({"input_shape": [3], "layers": [{"class": "Dense", "config": {"units": 2, "kernel_size": {"x": 1}}}]}, None),
        ({"input_shape": [3]}, "network spec is malformed"),
        ({"layers": []}, "network spec is malformed"),
        ({"input_shape": [3], "layers": {"class": "Dense"}}, "network spec is malformed"),
        ({"input_shape": [3], "layers": [{"config": {"units": 2}}]}, "network spec is malformed"),
        ({"input_shape": [3], "layers": [{"class": "Dense", "config": {"units": "two"}}]}, "network spec is malformed"),
        ({"input_shape": None, "layers": []}, "network spec is malformed"),
    ],
    ids=["lambda", "activation", "nested-value", "no-layers", "no-input", "layers-dict", "no-class", "bad-units",
         "null-input"],
)
def test_build_refuses_tampered_specs(spec, message):
    if message is None:  # a dict-valued argument is not archivable
        with pytest.raises(ArchiveError, match="cannot be archived"):
            build_sequential(spec)
        return
    with pytest.raises(ArchiveError, match=message):
        build_sequential(spec)


def test_build_drops_keys_outside_the_allow_list():
    spec = {"input_shape": [3], "layers": [{"class": "Dense", "config": {
        "units": 2, "name": "x" * 5, "kernel_regularizer": {"class_name": "L2"}, "dtype": "float64"}}]}
    net = build_sequential(spec)
    dense = net.layers[0]
    assert dense.units == 2 and dense.kernel_regularizer is None and dense.compute_dtype == "float32"


@pytest.mark.parametrize(
    "spec",
    [
        {"input_shape": [3], "layers": [{"class": "Dense", "config": {"units": 10**9}}]},
        {"input_shape": [64], "layers": [{"class": "Dense", "config": {"units": 4000}},
                                         {"class": "Dense", "config": {"units": 4000}},
                                         {"class": "Dense", "config": {"units": 4000}}]},
        {"input_shape": [10, 3], "layers": [{"class": "LSTM", "config": {"units": 5000}}]},
        {"input_shape": [8, 8, 1], "layers": [{"class": "Conv2D", "config": {"filters": 10**6, "kernel_size": 3}}]},
        {"input_shape": [10**8], "layers": []},
        {"input_shape": [4], "layers": [{"class": "Reshape", "config": {"target_shape": [-1, 2]}},
                                        {"class": "Dense", "config": {"units": 3}}]},
    ],
    ids=["huge-dense", "deep-wide", "huge-lstm", "huge-conv", "huge-input", "ok-reshape"],
)
def test_build_refuses_oversized_networks_before_allocating_them(spec):
    if spec["layers"] and spec["layers"][0]["class"] == "Reshape":  # a small network still builds
        assert build_sequential(spec).count_params() == 3 * 3
        return
    with pytest.raises(ArchiveError, match="does not load networks that large"):
        build_sequential(spec)


def test_the_weight_estimate_matches_keras_for_every_weighted_layer():
    from engine.nets import _weights_of

    cases = [
        ("Dense", {"units": 7}, (None, 5)),
        ("Conv1D", {"filters": 4, "kernel_size": 3}, (None, 20, 2)),
        ("Conv2D", {"filters": 4, "kernel_size": 3}, (None, 8, 8, 3)),
        ("Conv2DTranspose", {"filters": 3, "kernel_size": 3}, (None, 4, 4, 2)),
        ("LSTM", {"units": 7}, (None, 20, 3)),
        ("GRU", {"units": 5}, (None, 20, 3)),
    ]
    for name, config, shape in cases:
        spec = {"input_shape": list(shape[1:]), "layers": [{"class": name, "config": config}]}
        net = build_sequential(spec)
        layer = net.layers[0]
        assert _weights_of(name, layer, shape) == net.count_params(), name
