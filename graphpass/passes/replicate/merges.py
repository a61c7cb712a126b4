"""The global side: what global readers of the region read instead, and the merges of towers' outputs."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2

from ... import gradients, opdefs
from ...context import RewriteContext
from ...errors import ConfigError
from ...ir import names
from ...ir.rewriter import int_attr, type_attr, type_list_attr
from ...naming import tower_name
from .devices import Devices
from .nodes import mean_of
from .originals import read_from_outside
from .reductions import Sinks
from .regions import Regions

FLOAT_TYPES = (types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_DOUBLE, types_pb2.DT_BFLOAT16)
INT_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)

Merges = dict[str, frozenset[int]]  # by region node: the outputs that global nodes read merged


def rewire_global_users(
    ctx: RewriteContext, regions: Regions, sinks: Sinks, devs: Devices, original: frozenset[str]
) -> Merges:
    """Global readers of region nodes: gradients -> reduced value, control -> every copy,
    data -> merged value (built later under the original name). Each reader is rewritten
    once, however many region nodes it reads (a train op waits for thousands of updates).
    Returns the merges that the readers now expect."""
    g, rw, k = ctx.graph, ctx.rewriter, ctx.num_towers
    region, update, dep = regions.region, regions.update, regions.dep
    merges: dict[str, set[int]] = {}
    ran: dict[tuple[str, int, int], str] = {}
    raw_sink = {names.node_of(t): outs[0] for t, outs in sinks.items()}
    readers: dict[str, None] = {}
    outside = read_from_outside(g, region, original)
    for n in regions.order:
        if n not in outside:
            continue
        for user in g.users(n):
            if user not in region and user in original:
                readers[user] = None
        for user in g.colocation_users(n):
            if user not in region and user in original:
                targets = g.colocation(user)
                copies = _copies(regions, k, n)
                new = [raw_sink.get(t, copies[0]) if t == n else t for t in targets]
                rw.set_colocation(user, new)
    for user in readers:
        new_inputs: list[str] = []
        # A global node that reads one tower's copy of an update (a cond around apply ops
        # yields a value) must still run every tower's: they update every replica.
        run_all: list[str] = []
        for ref in g.node(user).input:
            r = names.parse(ref)
            if r.node not in region:
                new_inputs.append(ref)
            elif r.control:
                # Waiting for a stateful node (a read of step state) means waiting for every
                # tower's copy: each runs on its own schedule.
                per_tower = r.node in dep or r.node in update or opdefs.is_stateful(g.node(r.node).op)
                new_inputs.extend(
                    names.control(c) for c in (_copies(regions, k, r.node) if per_tower else [r.node])
                )
            else:
                copies = _copies(regions, k, r.node)
                new_inputs.append(_global_input(ctx, regions, sinks, merges, r.node, r.index, user, copies))
                if r.node in update and opdefs.is_stateful(g.node(r.node).op):
                    run_all += [names.control(_ran(ctx, devs, ran, r.node, r.index, i)) for i in range(1, k)]
        rw.set_inputs(user, new_inputs + [c for c in dict.fromkeys(run_all) if c not in new_inputs])
    return {n: frozenset(ks) for n, ks in merges.items()}


def _ran(ctx: RewriteContext, devs: Devices, ran: dict, n: str, k: int, i: int) -> str:
    """An Identity on tower i's device reading output `k` of its copy of `n` (made once): a
    control input on it runs that copy whole. One on the copy itself may not: a lowered
    functional If signals control outputs once its branch is chosen, and runs the branch's
    ops only for its data outputs' readers."""
    key = (n, k, i)
    if key not in ran:
        rw = ctx.rewriter
        dtype = opdefs.output_types(ctx.graph.node(n))[k]
        name = rw.unique_name(tower_name(i, f"{n}/ran_{k}"))
        rw.add(name, "Identity", [names.tensor(tower_name(i, n), k)], {"T": type_attr(dtype)})
        rw.set_device(name, devs.towers[i])
        ran[key] = name
    return ran[key]


def _copies(regions: Regions, k: int, n: str) -> list[str]:
    towers = range(1) if n in regions.tower0_only else range(k)
    return [tower_name(i, n) for i in towers]


def _global_input(
    ctx: RewriteContext, regions: Regions, sinks: Sinks, merges: dict, n: str, k: int, user: str, copies
) -> str:
    """What global node `user` reads instead of output `k` of region node `n`."""
    t = names.tensor(n, k)
    if t in sinks:
        return sinks[t][0]
    unode = ctx.graph.node(user)
    writes = any(p < len(unode.input) for p in gradients.written_positions(unode, ctx.analysis.library))
    if n in regions.data_dep and not writes and n not in regions.update and n not in regions.tower0_only:
        merges.setdefault(n, set()).add(k)
        return t
    if n in regions.dep or n in regions.update:
        # identical in every tower (or a write that takes tower 0's value): tower 0's copy
        return names.tensor(copies[0], k)
    return t


def combine(*parts: Merges) -> Merges:
    """The union of merges asked for by several stages."""
    out: dict[str, set[int]] = {}
    for part in parts:
        for n, ks in part.items():
            out.setdefault(n, set()).update(ks)
    return {n: frozenset(ks) for n, ks in out.items()}


def merge_outputs(ctx: RewriteContext, regions: Regions, merges: Merges, shared_updates: str) -> None:
    """Replace each tower node still read globally by a node of the same name that merges
    the towers' copies: mean (float scalars), sum (integer scalars), batch concatenation."""
    g, rw = ctx.graph, ctx.rewriter
    if merges:  # their shapes decide how
        ctx.shapes.prepare(sorted(merges))
    for n in regions.order:
        if n not in merges:
            continue
        src = g.node(n)
        used = max(merges[n])
        types = opdefs.output_types(src)[: used + 1]
        device = ctx.devices[0]
        rw.take(n)
        if used == 0:
            _merge_one(ctx, regions, shared_updates, n, n, 0, types[0], device)
        else:
            parts = [
                _merge_one(ctx, regions, shared_updates, f"{n}/merged_{k}", n, k, types[k], device)
                for k in range(used + 1)
            ]
            rw.add(n, "IdentityN", parts, {"T": type_list_attr(types)}, device)


def _merge_one(
    ctx: RewriteContext,
    regions: Regions,
    shared_updates: str,
    name: str,
    src: str,
    k: int,
    dtype: int,
    device,
) -> str:
    rw, towers = ctx.rewriter, ctx.num_towers
    t = names.tensor(src, k)
    copies = [names.tensor(tower_name(i, src), k) for i in range(towers)]
    kind = _merge_kind(ctx, regions, shared_updates, t, dtype)
    if kind == "tower0" or towers == 1:
        rw.add(name, "Identity", [copies[0]], {"T": type_attr(dtype)}, device)
    elif kind == "concat":
        axis = rw.const(rw.unique_name(f"{name}/axis"), 0, types_pb2.DT_INT32, device)
        rw.add(
            name,
            "ConcatV2",
            copies + [axis.name],
            {"T": type_attr(dtype), "N": int_attr(towers), "Tidx": type_attr(types_pb2.DT_INT32)},
            device,
        )
    else:
        mean_of(rw, ctx.devices[0], name, copies, dtype, "Mean" if kind == "mean" else "Sum")
    return name


def _merge_kind(ctx: RewriteContext, regions: Regions, shared_updates: str, t: str, dtype: int) -> str:
    shape = ctx.shapes.shape(t)
    if shape is not None and len(shape) == 0:
        if dtype in FLOAT_TYPES:
            return "mean"
        return "sum" if dtype in INT_TYPES else "tower0"
    if shape is None or shape[0] is None:
        return "concat"
    static = {i.static_batch for i in regions.batched.values()}
    if shape[0] in static:
        if (t, 0) in ctx.batch.batch_axes:
            return "concat"
        raise ConfigError(
            f"cannot tell whether dimension 0 of '{t}' ({shape[0]}), which the graph outside the towers "
            "reads, is the fixed batch: its shapes do not follow the inputs there"
        )
    return "mean" if shared_updates == "mean" and dtype in FLOAT_TYPES else "tower0"
