"""Short, deterministic text for the AttrValues, shapes and tensors of a graph diff."""

from __future__ import annotations

import hashlib
import os

from tensorflow.core.framework import attr_value_pb2, types_pb2

VALUE_CHARS = 60  # an attribute value longer than this is cut with "..."
SMALL_TENSOR = 8  # tensors with at most this many elements show their values


def format_attr(value: attr_value_pb2.AttrValue) -> str:
    """A short, deterministic text for an AttrValue: DT_FLOAT, [2,3], "str", DT_INT32[] 2, [a, b].

    Args:
        value: the AttrValue.
    Returns:
        The text, cut to about VALUE_CHARS characters with "...".
    """
    return cut(attr_text(value))


def attr_text(value: attr_value_pb2.AttrValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return "(empty)"
    if kind == "s":
        return _bytes_text(value.s)
    if kind == "i":
        return str(value.i)
    if kind == "f":
        return _float_text(value.f)
    if kind == "b":
        return "true" if value.b else "false"
    if kind == "type":
        return _type_name(value.type)
    if kind == "shape":
        return format_shape(value.shape)
    if kind == "tensor":
        return format_tensor(value.tensor)
    if kind == "func":
        return _func_text(value.func)
    if kind == "placeholder":
        return f"${value.placeholder}"
    return _list_text(value.list)


def _list_text(lst: attr_value_pb2.AttrValue.ListValue) -> str:
    items: list[str] = []
    items += [_bytes_text(s) for s in lst.s]
    items += [str(i) for i in lst.i]
    items += [_float_text(f) for f in lst.f]
    items += ["true" if b else "false" for b in lst.b]
    items += [_type_name(t) for t in lst.type]
    items += [format_shape(s) for s in lst.shape]
    items += [format_tensor(t) for t in lst.tensor]
    items += [_func_text(f) for f in lst.func]
    return "[" + ", ".join(items) + "]"


def _bytes_text(data: bytes) -> str:
    return '"' + data.decode("utf-8", "backslashreplace").replace('"', '\\"') + '"'


def _float_text(value: float) -> str:
    import numpy as np

    return str(np.float32(value))


def _type_name(dtype: int) -> str:
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DT_{dtype}"


def _func_text(func) -> str:
    if not func.attr:
        return func.name
    inner = ", ".join(f"{k}={attr_text(func.attr[k])}" for k in sorted(func.attr))
    return f"{func.name}{{{inner}}}"


def format_shape(shape) -> str:
    """A TensorShapeProto as [2,3] ([] a scalar, ? an unknown dimension, <unknown> unknown rank)."""
    if shape.unknown_rank:
        return "<unknown>"
    return "[" + ",".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def format_tensor(tensor) -> str:
    """A TensorProto as DT_INT32[] 2, DT_FLOAT[2] [0.5, 1], or DT_FLOAT[784,10] <7840 values sha1:...>."""
    head = f"{_type_name(tensor.dtype)}{format_shape(tensor.tensor_shape)}"
    size = 1
    for d in tensor.tensor_shape.dim:
        size *= max(d.size, 0)
    try:
        from tensorflow.python.framework import tensor_util

        array = tensor_util.MakeNdarray(tensor)
    except Exception:  # noqa: BLE001 - an undecodable tensor is shown by its digest
        array = None
    if array is not None and size <= SMALL_TENSOR:
        values = [_scalar_text(v) for v in array.flat]
        if not tensor.tensor_shape.dim:
            return f"{head} {values[0]}" if values else head
        return f"{head} [{', '.join(values)}]"
    data = (
        array.tobytes()
        if array is not None and array.dtype != object
        else tensor.SerializeToString(deterministic=True)
    )
    digest = hashlib.sha1(data).hexdigest()[:8]
    return f"{head} <{size} values sha1:{digest}>"


def _scalar_text(value) -> str:
    if isinstance(value, bytes):
        return _bytes_text(value)
    return str(value)


def cut(text: str, limit: int = VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cut_pair(a: str, b: str, limit: int = VALUE_CHARS) -> tuple[str, str]:
    """Cut two different long values so that the place where they first differ stays visible."""
    if cut(a, limit) != cut(b, limit):
        return cut(a, limit), cut(b, limit)
    common = len(os.path.commonprefix([a, b]))
    start = max(common - limit // 3, 0)
    return (cut("..." + a[start:], limit), cut("..." + b[start:], limit))
