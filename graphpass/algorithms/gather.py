"""gather: a sparse gradient's values and indices from every tower, concatenated (never densified)."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2

from ..ir.rewriter import int_attr, type_attr
from .base import Builder


def build_gather(b: Builder) -> list[str]:
    """Values (scaled by 1/K when averaging, on their own device first) or indices of every tower,
    concatenated once and read by every output: the sum of the towers' IndexedSlices."""
    parts = list(b.red.inputs)
    if b.red.kind == "values":
        parts = [b.scaled(i, t, b.device(i)) for i, t in enumerate(parts)]
    if b.red.all_reduce:
        dev = b.device(b.ordinal % b.k)
    else:
        dev = b.ctx.graph.node(b.red.outputs[0]).device or b.device(0)
    if len(parts) == 1:
        return [b.identity(None, parts[0], dev, "gathered")] * len(b.red.outputs)
    axis = b.const(None, "axis", 0, types_pb2.DT_INT32, dev)
    total = b.add(
        None,
        "gathered",
        "ConcatV2",
        parts + [axis],
        {"T": type_attr(b.red.dtype), "N": int_attr(len(parts)), "Tidx": type_attr(types_pb2.DT_INT32)},
        dev,
    )
    return [total] * len(b.red.outputs)
