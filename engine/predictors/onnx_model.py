"""ONNX classifiers through onnxruntime: no code of the file runs, so they are allowed in every deployment."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from engine.errors import ModelError
from engine.predictors import onnx_graph
from engine.predictors.base import Predictor, probability_problem


def intra_op_threads() -> int:
    """Threads one ONNX session may use: ``LANTERN_ONNX_THREADS``, default 1.

    One thread by default: the demo runs many users' jobs on few cores, and on a loaded 2-core machine two
    spinning intra-op threads made a 10,000-row random-forest call 2-5 times slower than one (bench/own_models.py).
    Raise it for a batch job on a machine of its own.
    """
    try:
        return max(1, int(os.environ.get("LANTERN_ONNX_THREADS", "1")))
    except ValueError:
        return 1

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
_EXPORT_HINT = ("Export a classifier whose output is class probabilities: from scikit-learn, "
                "skl2onnx.to_onnx(model, X[:1].astype('float32')) (with or without options={'zipmap': False}); "
                "from Keras, end the model with a softmax (or a single sigmoid) layer before converting.")


def _session(data: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        # Tensors stored "in another file" would be read from the server's working directory: point onnxruntime
        # at an empty folder instead, so any such reference fails (load_onnx refuses them up front as well).
        with tempfile.TemporaryDirectory(prefix="lantern-onnx-") as empty:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", empty)
            return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"onnxruntime cannot load this ONNX file ({first}); it may be truncated or made for "
                         "an ONNX version or operators this runtime lacks. Export it again (e.g. IR version 9, "
                         "opset 13 to 21).") from exc


def _input_width(session) -> tuple[str, type, int]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs[:8])
        raise ModelError(f"the ONNX model has {len(inputs)} inputs ({names}); Lantern passes one float matrix. "
                         "Export it with a single input of shape [None, n_features], e.g. with skl2onnx: "
                         "to_onnx(model, X[:1].astype('float32')) on a purely numeric X (not a DataFrame with "
                         "one input per column).")
    spec = inputs[0]
    if spec.type not in _FLOAT_TYPES:
        raise ModelError(f"the ONNX model's input {spec.name!r} is {spec.type}; Lantern passes numbers as float32 "
                         "(or float64). Export it with a float input (e.g. skl2onnx with X.astype('float32')).")
    shape = spec.shape
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise ModelError(f"the ONNX model's input {spec.name!r} has shape {shape}; Lantern needs [None, "
                         "n_features] with a fixed number of features (a table of rows).")
    return spec.name, _FLOAT_TYPES[spec.type], shape[1]


def _zipmap_matrix(maps: list, labels: list) -> np.ndarray:
    return np.array([[row[label] for label in labels] for row in maps], dtype=np.float64).reshape(len(maps),
                                                                                                 len(labels))


def load_onnx(data: bytes, *, reload=None) -> Predictor:
    """A ``Predictor`` from the bytes of an ONNX classifier (see ``engine.predictors.load_predictor``)."""
    try:
        nodes = onnx_graph.read_nodes(data)
    except onnx_graph.WireError as exc:
        raise ModelError(f"the file is not a readable ONNX model ({exc}): it is truncated or not ONNX at all. "
                         f"{_EXPORT_HINT}") from exc
    if onnx_graph.external_tensors(data):
        raise ModelError("the ONNX model keeps weights in separate files (external data), which Lantern does not "
                         "read; save it as one self-contained file, e.g. onnx.save(model, 'model.onnx', "
                         "save_as_external_data=False).")
    session = _session(data)
    input_name, input_dtype, n_features = _input_width(session)
    outputs = session.get_outputs()
    tensors = [o for o in outputs if o.type in _FLOAT_TYPES and len(o.shape) == 2]
    zipmaps = [o for o in outputs if o.type.startswith("seq(map(")]
    chosen = tensors[-1] if tensors else (zipmaps[0] if zipmaps else None)
    if chosen is None:
        found = ", ".join(f"{o.name}: {o.type} {o.shape}" for o in outputs)
        raise ModelError(f"none of the ONNX model's outputs is a matrix of class probabilities (found {found}): "
                         "a model that outputs only labels or values (a regressor) cannot be explained. "
                         f"{_EXPORT_HINT}")
    if len(tensors) > 1:
        candidates = [o for o in tensors if "prob" in o.name.lower()]
        chosen = candidates[0] if candidates else chosen
    labels = onnx_graph.class_labels(nodes)
    made_by = onnx_graph.producer(nodes, chosen.name)
    output_name = chosen.name
    is_zipmap = chosen in zipmaps
    if is_zipmap and made_by is not None and made_by.op_type == "ZipMap" and made_by.inputs and made_by.labels:
        # A ZipMap turns the probability matrix into one dict per row; read the matrix it is given instead
        # (no per-row Python), in the order of the ZipMap's own labels.
        try:
            session = _session(onnx_graph.with_float_output(data, made_by.inputs[0]))
            output_name, is_zipmap = made_by.inputs[0], False
            labels = [str(v) for v in next(iter(made_by.labels.values()))]
        except ModelError:
            pass  # keep the dicts
    sigmoid_column = (not is_zipmap and chosen in tensors and chosen.shape[1] == 1 and made_by is not None
                      and made_by.op_type == "Sigmoid")

    def run(x: np.ndarray) -> np.ndarray:
        out = session.run([output_name], {input_name: x})[0]
        if is_zipmap:
            return _zipmap_matrix(out, zip_labels)
        proba = np.asarray(out, dtype=np.float64)
        if sigmoid_column:
            proba = np.concatenate([1.0 - proba, proba], axis=1)
        return proba

    # Run the model once on made-up rows to see what it returns. Some valid models refuse made-up values (a
    # one-hot encoder exported with handle_unknown='error'); then the shape comes from the graph, and
    # Predictor.check on the user's own rows is what verifies the probabilities.
    zip_labels: list = [] if labels is None else list(labels)
    probe = np.random.default_rng(0).normal(size=(8, n_features)).astype(input_dtype)
    probe[0] = 0.0
    try:
        if is_zipmap:
            zip_labels = list(session.run([output_name], {input_name: probe})[0][0].keys())
        proba = run(probe)
    except Exception as exc:
        proba, probe_error = None, exc
    if proba is not None:
        problem = probability_problem(proba)
        if problem is not None:
            kind = "logits or scores" if proba.ndim == 2 and proba.shape[1] > 1 else "a value per row (a regressor?)"
            raise ModelError(f"the ONNX model's output {output_name!r} is not class probabilities: {problem}; it "
                             f"looks like {kind}. {_EXPORT_HINT}")
        n_classes = proba.shape[1]
    else:
        width = chosen.shape[1] if chosen in tensors and isinstance(chosen.shape[1], int) else None
        n_classes = 2 if sigmoid_column else (len(labels) if labels else width)
        if not n_classes or n_classes < 2 or (
                not labels and (made_by is None or made_by.op_type not in ("Softmax", "Sigmoid"))):
            text = " ".join(str(probe_error).split())[:300]
            raise ModelError(f"the ONNX model fails on a float matrix of {n_features} columns "
                             f"({type(probe_error).__name__}: {text}) and its graph does not say it returns class "
                             f"probabilities. {_EXPORT_HINT}") from probe_error
    if is_zipmap:
        names = [str(k) for k in zip_labels]
    elif labels is not None and len(labels) == n_classes:
        names = labels
    else:
        names = [str(i) for i in range(n_classes)]
    return Predictor("onnx", run, n_features=n_features, class_names=names, size_bytes=len(data), reload=reload,
                     input_dtype=input_dtype)
