"""Small node builders the stages share: the check that a copy's name is free, and a mean over towers."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2

from ...errors import InvalidGraphError
from ...ir.graph import Graph
from ...ir.rewriter import Rewriter, bool_attr, int_attr, type_attr


def check_free(g: Graph, name: str) -> None:
    """Refuse a tower copy's name that the graph already has."""
    if name in g:
        raise InvalidGraphError(
            f"the graph already has a node named '{name}', the name of a tower copy; "
            "is it already replicated?"
        )


def mean_of(rw: Rewriter, device: str, name: str, tensors: list[str], dtype: int, op: str) -> str:
    """`op` (Mean or Sum) over the towers' tensors, stacked on a new first axis, on `device`."""
    stacked = rw.add(
        rw.unique_name(f"{name}/towers"),
        "Pack",
        tensors,
        {"T": type_attr(dtype), "N": int_attr(len(tensors)), "axis": int_attr(0)},
        device,
    )
    axis = rw.const(rw.unique_name(f"{name}/axis"), 0, types_pb2.DT_INT32, device)
    rw.add(
        name,
        op,
        [stacked.name, axis.name],
        {"T": type_attr(dtype), "Tidx": type_attr(types_pb2.DT_INT32), "keep_dims": bool_attr(False)},
        device,
    )
    return name
