"""Crafted files that the safety tests and ``bench/faults.py`` hand to Lantern: zip archives rewritten member by
member (``.keras`` files, detector archives) and an ONNX model whose weights live in another file."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np


def zip_members(source: bytes | str | Path) -> dict[str, bytes]:
    """The members of a zip archive (bytes, or a path), by name, in archive order."""
    with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of ``members`` (name → bytes), in their order; deflated, as ``engine.saving`` writes them."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def with_manifest(archive: bytes, edit) -> bytes:
    """A detector or explainer archive whose ``manifest.json`` was changed in place by ``edit(manifest)``."""
    members = zip_members(archive)
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    return zipped(members)


def onnx_with_external_weights(location: str) -> bytes:
    """A 4-input, 3-class ONNX classifier (MatMul + Softmax) whose 48 bytes of weights are to be read from the
    file ``location`` (ONNX external data) instead of the model file."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    weights = numpy_helper.from_array(np.zeros((4, 3), np.float32), "w")
    set_external_data(weights, location=location, offset=0, length=48)
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["z"]),
                               helper.make_node("Softmax", ["z"], ["p"], axis=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 3])], [weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
