"""Keras ``.keras`` classifiers, loaded with ``safe_mode=True`` after their configuration is inspected.

A ``.keras`` file is a zip of ``config.json`` (the architecture), ``metadata.json`` and ``model.weights.h5``.
Before Keras sees it, the zip is bounded (no bombs) and the configuration is walked: a ``Lambda`` layer, a
serialised Python function, or any class from a module outside ``keras`` (a custom object) is refused, so
nothing but Keras' own layers is ever built.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from engine.errors import ModelError
from engine.predictors.base import Predictor, check_zip

_CODE_CLASSES = {"Lambda", "__lambda__", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}
_PROBABILITY_ACTIVATIONS = {"softmax", "sigmoid"}


def _foreign_objects(config) -> list[str]:
    """Names of every class in the configuration that is not one of Keras' own, or that carries code."""
    found: list[str] = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            class_name = item.get("class_name")
            module = item.get("module")
            registered = item.get("registered_name")
            if isinstance(class_name, str) and class_name in _CODE_CLASSES:
                found.append(f"{class_name} (runs Python code)")
            elif isinstance(module, str) and module != "keras" and not module.startswith("keras."):
                found.append(f"{module}.{class_name}")
            elif isinstance(registered, str) and ">" in registered:
                found.append(f"{registered} (a registered custom object)")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(set(found))


def _read_config(data: bytes, max_bytes: int) -> dict:
    with check_zip(data, max_bytes=max_bytes, what=".keras") as zf:
        names = set(zf.namelist())
        if not {"config.json", "metadata.json"} <= names:
            raise ModelError(f"the file is a zip but not a Keras 3 .keras model (it holds {sorted(names)[:8]}, not "
                             "config.json and metadata.json); save it with model.save('model.keras').")
        try:
            config = json.loads(zf.read("config.json").decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"the .keras file's config.json is not valid JSON ({exc}).") from exc
    if not isinstance(config, dict):
        raise ModelError("the .keras file's config.json is not a model configuration.")
    return config


def _probability_model(model, keras):
    """``model`` itself when it ends in a softmax, a two-column model for one sigmoid unit; else a ModelError."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"the Keras model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; Lantern "
                         "needs one input (a table of rows) and one output (class probabilities).")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 2 or in_shape[1] is None:
        raise ModelError(f"the Keras model's input has shape {in_shape}; Lantern needs (None, n_features).")
    if len(out_shape) != 2 or out_shape[1] is None:
        raise ModelError(f"the Keras model's output has shape {out_shape}; Lantern needs (None, n_classes).")
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if type(last).__name__ == "Softmax" or (type(last).__name__ == "Activation" and activation == "softmax"):
        activation = "softmax"
    if activation not in _PROBABILITY_ACTIVATIONS:
        raise ModelError(f"the Keras model's last layer ({type(last).__name__} {last.name!r}) has activation "
                         f"{activation!r}, so its output is not class probabilities. End the model with "
                         "Dense(n_classes, activation='softmax') (or Dense(1, activation='sigmoid') for two classes).")
    if activation == "sigmoid":
        if out_shape[1] != 1:
            raise ModelError(f"the Keras model ends with {out_shape[1]} sigmoid units (independent labels, rows do "
                             "not sum to 1); use softmax for one class among several.")
        inputs = keras.Input(shape=(in_shape[1],), dtype="float32")
        p = model(inputs)
        return keras.Model(inputs, keras.layers.Concatenate()([keras.ops.subtract(1.0, p), p]))
    if out_shape[1] < 2:
        raise ModelError("the Keras model's softmax has a single unit (always 1); give it one unit per class.")
    return model


def load_keras(data: bytes, *, max_bytes: int, reload=None) -> Predictor:
    """A white-box ``Predictor`` from the bytes of a ``.keras`` file (see ``engine.predictors.load_predictor``)."""
    foreign = _foreign_objects(_read_config(data, max_bytes))
    if foreign:
        raise ModelError("the Keras model uses code or classes that are not part of Keras, which Lantern does not "
                         f"load: {', '.join(foreign[:12])}. Rebuild it from Keras' built-in layers only (no Lambda "
                         "or custom layers) and save it again, or export it to ONNX.")
    import keras
    import tensorflow as tf

    handle, path = tempfile.mkstemp(suffix=".keras", prefix="lantern-model-")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except ModelError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())  # Keras' reason is often on a later line
        text = text if len(text) <= 400 else text[:400] + " …"
        raise ModelError(f"Keras cannot load this .keras file in safe mode ({type(exc).__name__}: {text}). Save "
                         "it again with Keras 3 from built-in layers only, or export it to ONNX.") from exc
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if not isinstance(model, keras.Model):
        raise ModelError(f"the .keras file holds a {type(model).__name__}, not a Keras model.")
    proba_model = _probability_model(model, keras)
    n_features = int(model.inputs[0].shape[1])
    forward = tf.function(lambda x: proba_model(x, training=False), reduce_retracing=True,
                          input_signature=[tf.TensorSpec([None, n_features], tf.float32)])

    def run(x: np.ndarray) -> np.ndarray:
        return forward(x).numpy().astype(np.float64)

    n_classes = int(proba_model.outputs[0].shape[1])
    return Predictor("keras", run, n_features=n_features, class_names=[str(i) for i in range(n_classes)],
                     size_bytes=len(data), keras_model=proba_model, reload=reload)
