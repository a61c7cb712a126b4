"""The batch split: each batched input cut along axis 0 on the host, one shard per tower, and its check."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2

from ... import devices as devmod
from ...context import RewriteContext
from ...errors import ConfigError
from ...ir import names
from ...ir.rewriter import bool_attr, int_attr, type_attr, type_list_attr
from ...naming import tower_name
from .nodes import check_free
from .regions import Regions


def split_inputs(ctx: RewriteContext, regions: Regions, check_batch: bool) -> frozenset[str]:
    """Split every batched input into K shards; tower i reads its shard as `tower{i}/<input>`, so
    that towers differ only in their prefix (the byte copies rename nothing else). Returns the
    names of the inputs split."""
    rw, towers, k = ctx.rewriter, ctx.devices, ctx.num_towers
    host = devmod.host_of(towers[0])
    for name, inp in regions.batched.items():
        if inp.static_batch is not None and inp.static_batch % k:
            raise ConfigError(
                f"placeholder '{name}' has a fixed batch of {inp.static_batch}, which does not "
                f"divide across {k} towers"
            )
        base = rw.unique_name(f"{name}/split")
        axis = rw.const(f"{base}/axis", 0, types_pb2.DT_INT32, host)
        controls = []
        if check_batch and inp.static_batch is None:
            controls = [_batch_check(ctx, name, inp.dtype, base, host)]
        rw.add(
            base,
            "Split",
            [axis.name, name] + [names.control(c) for c in controls],
            {"T": type_attr(inp.dtype), "num_split": int_attr(k)},
            host,
        )
        for i in range(k):
            check_free(ctx.graph, tower_name(i, name))
            shard = rw.add(
                tower_name(i, name), "Identity", [names.tensor(base, i)], {"T": type_attr(inp.dtype)}
            )
            rw.record_tower(shard.name, i, name)
            rw.set_device(shard.name, devmod.for_node(shard, towers[i]))
    return frozenset(regions.batched)


def _batch_check(ctx: RewriteContext, name: str, dtype: int, base: str, host: str) -> str:
    """An Assert, on the host, that the batch fed to `name` divides by K."""
    rw, i32, k = ctx.rewriter, types_pb2.DT_INT32, ctx.num_towers
    shape = rw.add(
        f"{base}/check/shape", "Shape", [name], {"T": type_attr(dtype), "out_type": type_attr(i32)}, host
    )
    begin = rw.const(f"{base}/check/begin", [0], i32, host)
    end = rw.const(f"{base}/check/end", [1], i32, host)
    batch = rw.add(
        f"{base}/check/batch",
        "StridedSlice",
        [shape.name, begin.name, end.name, end.name],
        {
            "T": type_attr(i32),
            "Index": type_attr(i32),
            "shrink_axis_mask": int_attr(1),
            "begin_mask": int_attr(0),
            "end_mask": int_attr(0),
            "ellipsis_mask": int_attr(0),
            "new_axis_mask": int_attr(0),
        },
        host,
    )
    towers = rw.const(f"{base}/check/towers", k, i32, host)
    mod = rw.add(f"{base}/check/mod", "FloorMod", [batch.name, towers.name], {"T": type_attr(i32)}, host)
    zero = rw.const(f"{base}/check/zero", 0, i32, host)
    ok = rw.add(
        f"{base}/check/divisible",
        "Equal",
        [mod.name, zero.name],
        {"T": type_attr(i32), "incompatible_shape_error": bool_attr(True)},
        host,
    )
    msg = rw.const(
        f"{base}/check/message",
        f"graphpass: the batch fed to '{name}' is the global batch and must divide evenly across "
        f"{k} towers; its size is",
        types_pb2.DT_STRING,
        host,
    )
    assert_op = rw.add(
        f"{base}/check/assert",
        "Assert",
        [ok.name, msg.name, batch.name],
        {"T": type_list_attr([types_pb2.DT_STRING, i32]), "summarize": int_attr(3)},
        host,
    )
    return assert_op.name
