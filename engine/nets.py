"""Networks as plain JSON specs, and default architectures built from the data's shape.

An archive never stores executable model files. It stores a *spec*: a list of layers whose
classes come from a fixed allow-list, with JSON-only arguments. :func:`build_sequential` turns a
spec back into a Keras model that our code builds; :func:`describe_sequential` makes a spec
from a ``keras.Sequential`` of allowed layers (the networks users pass to detectors).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Sequence

import keras

from engine.errors import ArchiveError

# Layer classes an archive may name, with the config keys kept from each.
_LAYERS: dict[str, type] = {
    "Dense": keras.layers.Dense,
    "Dropout": keras.layers.Dropout,
    "Flatten": keras.layers.Flatten,
    "Reshape": keras.layers.Reshape,
    "Conv1D": keras.layers.Conv1D,
    "Conv2D": keras.layers.Conv2D,
    "Conv2DTranspose": keras.layers.Conv2DTranspose,
    "MaxPooling2D": keras.layers.MaxPooling2D,
    "AveragePooling2D": keras.layers.AveragePooling2D,
    "GlobalAveragePooling2D": keras.layers.GlobalAveragePooling2D,
    "BatchNormalization": keras.layers.BatchNormalization,
    "LayerNormalization": keras.layers.LayerNormalization,
    "Activation": keras.layers.Activation,
    "LSTM": keras.layers.LSTM,
    "GRU": keras.layers.GRU,
}
_SAFE_KEYS = {
    "units", "activation", "use_bias", "rate", "target_shape", "filters", "kernel_size", "strides",
    "padding", "pool_size", "axis", "momentum", "epsilon", "return_sequences", "return_state",
    "data_format", "recurrent_activation", "dilation_rate", "center", "scale",
}
# A spec from an archive is data, so its size is checked before any weight is allocated: a tampered
# "units": 10**9 must fail with a message, not exhaust the server's memory.
MAX_PARAMS = 20_000_000
MAX_VALUES_PER_ROW = 10_000_000

_ACTIVATIONS = {
    None, "linear", "relu", "tanh", "sigmoid", "softmax", "elu", "selu", "softplus", "softsign",
    "gelu", "swish", "silu", "leaky_relu", "relu6", "hard_sigmoid", "exponential", "log_softmax",
}


def _clean_config(name: str, config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if key not in _SAFE_KEYS:
            continue
        if key in ("activation", "recurrent_activation"):
            # Built-in activations serialise as their name; anything else (a lambda, a custom
            # function) serialises as a dict and cannot be rebuilt without running its code.
            if not (value is None or isinstance(value, str)) or value not in _ACTIVATIONS:
                shown = value if isinstance(value, str) else "a custom function"
                raise ArchiveError(f"activation {shown!r} of a {name} layer is not supported in archives; "
                                   "use a built-in activation name such as 'relu' or 'tanh'.")
        if isinstance(value, tuple):  # Keras keeps kernel sizes, strides and shapes as tuples
            value = list(value)
        if isinstance(value, list) and not all(isinstance(v, (int, float, str, bool, type(None))) for v in value):
            raise ArchiveError(f"{name}.{key} holds nested values that cannot be archived.")
        if not isinstance(value, (int, float, str, bool, list, type(None))):
            raise ArchiveError(f"{name}.{key} has a value of type {type(value).__name__} that cannot be archived.")
        out[key] = value
    return out


def describe_sequential(model: keras.Model) -> dict[str, Any]:
    """Describe a built ``keras.Sequential`` of allowed layers as a JSON-safe spec.

    Raises
    ------
    ArchiveError
        When the model uses a layer or an argument outside the allow-list; such models can be
        used in memory but not saved.

    Examples
    --------
    >>> net = mlp(4, [8], 2)
    >>> describe_sequential(net)['layers'][0]['class']
    'Dense'
    """
    if not isinstance(model, keras.Sequential):
        raise ArchiveError(
            f"only keras.Sequential networks can be saved, got {type(model).__name__}; "
            "rebuild the network as a Sequential of standard layers."
        )
    if not model.built:
        raise ArchiveError("the network is not built yet: call it on data (or fit the detector) before saving.")
    layers = []
    for layer in model.layers:
        name = type(layer).__name__
        if name not in _LAYERS or type(layer) is not _LAYERS[name]:
            raise ArchiveError(f"layer type {name} is not supported in archives; use standard Keras layers.")
        layers.append({"class": name, "config": _clean_config(name, layer.get_config())})
    input_shape = list(model.inputs[0].shape[1:]) if model.inputs else None
    return {"input_shape": input_shape, "layers": layers}


def build_sequential(spec: dict[str, Any], name: str | None = None) -> keras.Sequential:
    """Build a ``keras.Sequential`` from a spec made by :func:`describe_sequential`.

    Only allow-listed layer classes and keys are used, so a tampered spec cannot run code.
    """
    try:
        input_shape = spec["input_shape"]
        layer_specs = spec["layers"]
        if not isinstance(layer_specs, list):
            raise TypeError("layers must be a list")
        shape = tuple(int(d) for d in input_shape)
        _check_values(shape)
        layers: list = [keras.Input(shape)]
        n_params = 0
        current = (None, *shape)
        for item in layer_specs:
            cls_name = item["class"]
            if cls_name not in _LAYERS:
                raise ArchiveError(f"archive names layer type {cls_name!r}, which is not allowed.")
            layer = _LAYERS[cls_name](**_clean_config(cls_name, dict(item["config"])))
            n_params += _weights_of(cls_name, layer, current)
            if n_params > MAX_PARAMS:
                raise ArchiveError(f"the network in this archive would have more than {MAX_PARAMS:,} weights; "
                                   "Lantern does not load networks that large.")
            current = tuple(layer.compute_output_shape(current))
            _check_values(current[1:])
            layers.append(layer)
        return keras.Sequential(layers, name=name)
    except ArchiveError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveError(f"network spec is malformed ({exc}).") from exc


def _check_values(shape: tuple) -> None:
    dims = [int(dim) for dim in shape if dim is not None]
    if any(dim < 0 for dim in dims):
        raise ArchiveError("network spec has a negative dimension.")
    if math.prod(dims) > MAX_VALUES_PER_ROW:
        raise ArchiveError(f"the network in this archive has a layer of more than {MAX_VALUES_PER_ROW:,} values per row; "
                           "Lantern does not load networks that large.")


def _weights_of(cls_name: str, layer: keras.layers.Layer, input_shape: tuple) -> int:
    """Upper bound on the number of weights ``layer`` creates on ``input_shape``, without building it."""
    channels = int(input_shape[-1] or 0)
    if cls_name == "Dense":
        return (channels + 1) * int(layer.units)
    if cls_name in ("Conv1D", "Conv2D", "Conv2DTranspose"):
        kernel = math.prod(int(k) for k in layer.kernel_size)
        return (kernel * channels + 1) * int(layer.filters)
    if cls_name == "LSTM":
        return 4 * int(layer.units) * (channels + int(layer.units) + 1)
    if cls_name == "GRU":
        return 3 * int(layer.units) * (channels + int(layer.units) + 2)
    if cls_name in ("BatchNormalization", "LayerNormalization"):
        return 4 * channels
    return 0


def seeded(initializer: type = keras.initializers.GlorotUniform, seed: int | None = None, offset: int = 0):
    """An ``initializer`` seeded with ``seed + offset``, or unseeded when ``seed`` is None.

    Every seeded layer in the engine takes its initialiser from here (directly or through
    :func:`seeded_initializers`), so no global random state is touched.

    Examples
    --------
    >>> seeded(keras.initializers.Orthogonal, 3, 1).seed
    4
    """
    return initializer(seed=None if seed is None else seed + offset)


def seeded_initializers(seed: int | None, initializer: type = keras.initializers.GlorotUniform) -> Callable:
    """A function returning a new ``initializer`` per call, seeded ``seed``, ``seed + 1``, ... in call order.

    Build a network's layers in order, each with ``kernel_initializer=init()``: one seed gives the
    same network.

    Examples
    --------
    >>> init = seeded_initializers(10)
    >>> [init().seed, init().seed]
    [10, 11]
    """
    offsets = itertools.count()
    return lambda: seeded(initializer, seed, next(offsets))


def mlp(
    n_inputs: int,
    hidden: Sequence[int],
    n_outputs: int,
    *,
    activation: str = "tanh",
    output_activation: str | None = None,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Sequential:
    """A fully connected network ``n_inputs → hidden… → n_outputs``.

    Weights are initialised from ``seed`` (per layer), so two calls with one seed give the same
    network without touching any global random state.

    Examples
    --------
    >>> mlp(10, [8, 4], 2, output_activation='softmax').output_shape
    (None, 2)
    """
    init = seeded_initializers(seed)
    layers: list = [keras.Input((int(n_inputs),))]
    for i, units in enumerate(list(hidden) + [n_outputs]):
        last = i == len(hidden)
        layers.append(
            keras.layers.Dense(
                int(units),
                activation=output_activation if last else activation,
                kernel_initializer=init(),
            )
        )
    return keras.Sequential(layers, name=name)
