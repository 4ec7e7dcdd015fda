"""Just enough of the ONNX file format to read what onnxruntime does not expose: the top graph's nodes.

onnxruntime tells a session's inputs and outputs but not which operator makes an output, nor the class labels
that scikit-learn converters store as node attributes (``classlabels_strings`` / ``classlabels_int64s`` /
``classlabels_ints``). The ``onnx`` package could, but it is a test dependency only, so this module walks the
protobuf wire format itself: a model is a message whose field 7 is the graph; a graph's field 1 repeats nodes;
a node has ``input`` (1), ``output`` (2), ``op_type`` (4) and ``attribute`` (5); an attribute has ``name`` (1),
``ints`` (8) and ``strings`` (9). Everything else (weights included) is skipped without copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass
class Node:
    """One operator of the top graph: its type, output names and class-label attributes."""

    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    labels: dict[str, list] = field(default_factory=dict)


_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _fields(buf: memoryview):
    """Yield ``(field_number, wire_type, value)``: an int for varints, a memoryview for length-delimited fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("truncated message")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _attribute(buf: memoryview) -> tuple[str, list]:
    name, ints, strings = "", [], []
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == 8 and wire == 0:
            ints.append(_signed(value))
        elif number == 8 and wire == 2:  # packed repeated int64
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                ints.append(_signed(item))
        elif number == 9 and wire == 2:
            strings.append(bytes(value).decode("utf-8", "replace"))
    return name, (strings if name == "classlabels_strings" else ints)


def _node(buf: memoryview) -> Node:
    node = Node()
    for number, wire, value in _fields(buf):
        if wire != 2:
            continue
        if number == 1:
            node.inputs.append(bytes(value).decode("utf-8", "replace"))
        elif number == 2:
            node.outputs.append(bytes(value).decode("utf-8", "replace"))
        elif number == 4:
            node.op_type = bytes(value).decode("utf-8", "replace")
        elif number == 5:
            name, values = _attribute(value)
            if name in _LABEL_ATTRIBUTES and values:
                node.labels[name] = values
    return node


def read_nodes(data: bytes) -> list[Node]:
    """The nodes of an ONNX model's top graph, in file order.

    Raises
    ------
    WireError
        When ``data`` is not a protobuf message holding a graph.

    Examples
    --------
    >>> read_nodes(b"")
    Traceback (most recent call last):
    ...
    engine.predictors.onnx_graph.WireError: no graph in the file
    """
    graph = None
    for number, wire, value in _fields(memoryview(data)):
        if number == 7 and wire == 2:
            graph = value
    if graph is None:
        raise WireError("no graph in the file")
    return [_node(value) for number, wire, value in _fields(graph) if number == 1 and wire == 2]


def _tensor_is_external(buf: memoryview) -> bool:
    """A TensorProto whose data lives in another file: ``external_data`` (13) or ``data_location`` (14) = EXTERNAL."""
    return any((number == 13 and wire == 2) or (number == 14 and wire == 0 and value == 1)
               for number, wire, value in _fields(buf))


def external_tensors(data: bytes) -> int:
    """How many tensors of the top graph (initializers and node attributes) point to data in other files."""
    count = 0
    for number, wire, value in _fields(memoryview(data)):
        if number != 7 or wire != 2:
            continue
        for g_number, g_wire, g_value in _fields(value):
            if g_number == 5 and g_wire == 2:  # initializer
                count += _tensor_is_external(g_value)
            elif g_number == 1 and g_wire == 2:  # node: its attributes' tensors (t = 5, tensors = 11)
                for n_number, n_wire, n_value in _fields(g_value):
                    if n_number == 5 and n_wire == 2:
                        count += sum(_tensor_is_external(a_value) for a_number, a_wire, a_value in _fields(n_value)
                                     if a_number in (5, 11) and a_wire == 2)
    return count


def class_labels(nodes: list[Node]) -> list[str] | None:
    """Class labels stored by a ZipMap or an ``ai.onnx.ml`` classifier node, as strings; None when there are none.

    A ZipMap's labels win, since it is what orders the probabilities in its output.
    """
    ordered = sorted(nodes, key=lambda n: n.op_type != "ZipMap")
    for node in ordered:
        for name in _LABEL_ATTRIBUTES:
            if node.labels.get(name):
                return [str(v) for v in node.labels[name]]
    return None


def producer(nodes: list[Node], output: str) -> Node | None:
    """The node that computes the tensor named ``output``, looking through ``Identity`` nodes."""
    by_output = {name: node for node in nodes for name in node.outputs}
    node = by_output.get(output)
    for _ in range(len(nodes)):
        if node is None or node.op_type != "Identity" or not node.inputs:
            return node
        upstream = by_output.get(node.inputs[0])
        if upstream is None:
            return node
        node = upstream
    return node


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def with_float_output(data: bytes, name: str) -> bytes:
    """The model with the float tensor ``name`` added to its graph outputs.

    Protobuf merges a repeated embedded message field: appending a second ``graph`` holding only one more
    ``output`` (a ValueInfoProto: name, and type ``tensor(float)``) extends the graph's outputs, leaving the rest
    of the file as it is. Used to read a ZipMap's input matrix directly instead of its list of dicts.
    """
    tensor_type = _message(1, b"\x08\x01")  # TypeProto.tensor_type { elem_type: FLOAT }
    value_info = _message(1, name.encode("utf-8")) + _message(2, tensor_type)
    return data + _message(7, _message(12, value_info))
