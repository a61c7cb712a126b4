"""The batch split: each batched input cut along axis 0 on the host, one shard per tower, and its check."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2

from ... import batch_dims
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
    that towers differ only in their prefix (the byte copies rename nothing else). A sparse input
    is split by rows (SparseSplit: indices re-based, a dense shape per tower). Returns the names
    of the inputs split."""
    rw, k = ctx.rewriter, ctx.num_towers
    host = devmod.host_of(ctx.devices[0])
    sparse = {m: s for s in ctx.batch.sparse for m in s.members}
    for name, inp in regions.batched.items():
        if name in sparse:
            if name == sparse[name].shape:
                _split_sparse(ctx, sparse[name], regions, check_batch, host)
            continue
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
        _shards(ctx, name, inp.dtype, [names.tensor(base, i) for i in range(k)])
    return frozenset(regions.batched)


def check_shard_names(ctx: RewriteContext, names_: list[str]) -> None:
    """Refuse inputs whose shards' names (`tower{i}/<input>`, fixed by the contract) are taken."""
    for name in names_:
        for i in range(ctx.num_towers):
            check_free(ctx.graph, tower_name(i, name))


def fixed_per_tower(ctx: RewriteContext, regions: Regions, split: dict) -> None:
    """`replicate: {fixed_batch: per_tower}`: each tower takes the fixed batch B the graph was built
    for, so its shapes and constants stay right, and each split input takes K x B (the global
    batch). Refused where the graph outside the towers carries B (batch_dims.check_outside)."""
    fixed = {n: i for n, i in split.items() if i.static_batch is not None}
    if not fixed:
        return
    for n, i in fixed.items():
        if i.op != "Placeholder":
            raise ConfigError(
                f"fixed_batch: per_tower: input '{n}' ({i.op}) has a default of one tower's batch; "
                "it cannot take the global batch"
            )
    g = ctx.graph
    reached = g.descendants(sorted(fixed), through_control=False)
    outside = [n for n in g.names() if n in reached and n not in regions.region and n not in fixed]
    batch_dims.check_outside(g, fixed, outside, ctx.num_towers)
    for n, i in fixed.items():
        ctx.rewriter.set_shape_attr(n, "shape", [i.static_batch * ctx.num_towers] + list(i.shape[1:]))


def _shards(ctx: RewriteContext, name: str, dtype: int, pieces: list[str]) -> None:
    """Tower i's `tower{i}/<name>`: an Identity of piece i, on its device (check_shard_names made
    sure the name is free)."""
    rw = ctx.rewriter
    for i, piece in enumerate(pieces):
        shard = rw.add(tower_name(i, name), "Identity", [piece], {"T": type_attr(dtype)})
        rw.record_tower(shard.name, i, name)
        rw.set_device(shard.name, devmod.for_node(shard, ctx.devices[i]))


def _split_sparse(ctx: RewriteContext, sp, regions: Regions, check_batch: bool, host: str) -> None:
    """One SparseSplit of a sparse batch along its rows, with a check that they divide by K."""
    rw, k = ctx.rewriter, ctx.num_towers
    values = regions.batched[sp.values]
    base = rw.unique_name(f"{sp.shape}/split")
    axis = rw.const(f"{base}/axis", 0, types_pb2.DT_INT64, host)
    controls = []
    if check_batch:
        controls = [_batch_check(ctx, sp.shape, types_pb2.DT_INT64, base, host, rows=True)]
    rw.add(
        base,
        "SparseSplit",
        [axis.name, sp.indices, sp.values, sp.shape] + [names.control(c) for c in controls],
        {"T": type_attr(values.dtype), "num_split": int_attr(k)},
        host,
    )
    i64 = types_pb2.DT_INT64
    _shards(ctx, sp.indices, i64, [names.tensor(base, i) for i in range(k)])
    _shards(ctx, sp.values, values.dtype, [names.tensor(base, k + i) for i in range(k)])
    _shards(ctx, sp.shape, i64, [names.tensor(base, 2 * k + i) for i in range(k)])


def _batch_check(ctx: RewriteContext, name: str, dtype: int, base: str, host: str, rows: bool = False) -> str:
    """An Assert, on the host, that the batch fed to `name` divides by K: its first dimension, or
    with `rows` its first element (a sparse input's dense shape)."""
    rw, k = ctx.rewriter, ctx.num_towers
    size_t = types_pb2.DT_INT64 if rows else types_pb2.DT_INT32
    if rows:
        shape = ctx.graph.node(name)
    else:
        shape = rw.add(
            f"{base}/check/shape",
            "Shape",
            [name],
            {"T": type_attr(dtype), "out_type": type_attr(size_t)},
            host,
        )
    begin = rw.const(f"{base}/check/begin", [0], types_pb2.DT_INT32, host)
    end = rw.const(f"{base}/check/end", [1], types_pb2.DT_INT32, host)
    batch = rw.add(
        f"{base}/check/batch",
        "StridedSlice",
        [shape.name, begin.name, end.name, end.name],
        {
            "T": type_attr(size_t),
            "Index": type_attr(types_pb2.DT_INT32),
            "shrink_axis_mask": int_attr(1),
            "begin_mask": int_attr(0),
            "end_mask": int_attr(0),
            "ellipsis_mask": int_attr(0),
            "new_axis_mask": int_attr(0),
        },
        host,
    )
    towers = rw.const(f"{base}/check/towers", k, size_t, host)
    mod = rw.add(f"{base}/check/mod", "FloorMod", [batch.name, towers.name], {"T": type_attr(size_t)}, host)
    zero = rw.const(f"{base}/check/zero", 0, size_t, host)
    ok = rw.add(
        f"{base}/check/divisible",
        "Equal",
        [mod.name, zero.name],
        {"T": type_attr(size_t), "incompatible_shape_error": bool_attr(True)},
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
        {"T": type_list_attr([types_pb2.DT_STRING, size_t]), "summarize": int_attr(3)},
        host,
    )
    return assert_op.name
