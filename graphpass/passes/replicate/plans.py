"""Plans: how every tower's copy of a region node reads its inputs and where it runs, decided once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ...context import RewriteContext
from ...errors import InvalidGraphError
from ...ir import names
from ...ir.graph import NodeDef
from ...naming import tower_name
from .devices import device_kind
from .regions import Regions

# Input entries of a plan: a constant string, or a tuple rendered per tower (build.render):
# (COPY, "^" or "", input) is tower i's copy; (SINK, tensor) tower i's sink of a raw gradient;
# (STATE, "^" or "", variable, ":k" or "") tower i's replica; (MEAN, node, k) the towers' mean;
# (ALL, node) a control input on every tower's copy.
COPY, SINK, STATE, MEAN, ALL = range(5)


class Plan(NamedTuple):
    """One region node's plan: the original (which may leave the graph), its entries, its place."""

    src: NodeDef
    entries: list  # of its data inputs
    controls: tuple  # of its control inputs (shared by the nodes that share a control tuple)
    kind: tuple  # devices.device_kind


@dataclass(frozen=True)
class Plans:
    """Every region node's plan, and the tower tensors an update reads merged (by node: outputs)."""

    by_node: dict[str, Plan]
    merges: dict[str, frozenset[int]]


def plan_towers(ctx: RewriteContext, regions: Regions, split: frozenset[str], shared_updates: str) -> Plans:
    """Plan every region node. `memo`: entries by data input string, for the readers whose
    entries depend on nothing else, and control entries by control tuple (they depend on
    nothing else; nodes that share a tuple share its entries)."""
    g = ctx.graph
    variables = ctx.analysis.variables
    merges: dict[str, set[int]] = {}
    memo: dict = {}
    update, tower0_only = regions.update, regions.tower0_only

    def entry(ref: str, consumer: str):
        return _input_entry(regions, split, shared_updates, merges, ref, consumer)

    by_node = {}
    for n in regions.order:
        data, ctrl = g.producers(n)
        src = g.node(n)
        refs = src.input[: len(data)] if data else []
        if n in update or n in tower0_only:
            entries = [entry(ref, n) for ref in refs]
        else:
            entries = []
            for ref in refs:
                e = memo.get(ref)
                if e is None:
                    e = memo[ref] = entry(ref, n)
                entries.append(e)
        controls = ()
        if ctrl:
            key = (id(ctrl), n in tower0_only)
            controls = memo.get(key)
            if controls is None:
                controls = memo[key] = tuple(entry("^" + p, n) for p in ctrl)
        by_node[n] = Plan(src, entries, controls, device_kind(g, variables, n))
    _follow_colocation(g, by_node)
    return Plans(by_node, {n: frozenset(ks) for n, ks in merges.items()})


def _follow_colocation(g, by_node: dict[str, Plan]) -> None:
    """A region node colocated with another (`_class`) is placed like it: TensorFlow refuses
    colocated nodes on different devices (a loop gradient's constant colocated with a read
    that goes to its variable's parameter server, say)."""
    for n in list(by_node):
        seen = {n}
        target = n
        while True:
            follow = next((t for t in g.colocation(target) if t in by_node and t not in seen), None)
            if follow is None:
                break
            seen.add(follow)
            target = follow
        if target != n and by_node[target].kind != by_node[n].kind:
            by_node[n] = by_node[n]._replace(kind=by_node[target].kind)


def _input_entry(
    regions: Regions, split: frozenset[str], shared_updates: str, merges: dict, ref: str, consumer: str
):
    """The entry of input `ref` of region node `consumer`."""
    r = names.parse(ref)
    p = r.node
    pre = "^" if r.control else ""
    suffix = f":{r.index}" if r.index > 0 else ""
    if not r.control and consumer in regions.update and p in regions.tower:
        t = names.tensor(p, r.index)
        if t in regions.raw:
            return (SINK, t)
        if p in regions.data_dep:
            merges.setdefault(p, set()).add(r.index)
            return ref  # batch-dependent tower tensor read by the update: the merged value
    if p in regions.region:
        if p in regions.tower0_only:
            return pre + tower_name(0, p) + suffix
        if r.control and consumer in regions.tower0_only:
            return (ALL, p)  # what runs once waits for every tower's copy
        if consumer in regions.tower0_only and shared_updates == "mean" and p in regions.data_dep and not pre:
            return (MEAN, p, r.index)
        return (COPY, pre, p + suffix)
    if p in split:  # the tower's shard, named like a copy (see inputs.split_inputs)
        return (COPY, pre, p + suffix)
    if p in regions.state:
        return (STATE, pre, p, suffix)
    return ref


def check_output_size(ctx: RewriteContext, plans: Plans, limit: int) -> None:
    """Refuse, before copying anything, a rewrite whose GraphDef would pass `limit` bytes
    (protobuf's limit, io.MAX_GRAPH_BYTES)."""
    by_node, k = plans.by_node, ctx.num_towers
    tower = sum(plan.src.ByteSize() for plan in by_node.values())
    estimate = len(ctx.shapes.source_bytes) + (k - 1) * tower
    if estimate > limit:
        biggest = sorted(by_node, key=lambda n: -by_node[n].src.ByteSize())[:3]
        raise InvalidGraphError(
            f"the rewritten graph would be about {estimate / 2**30:.1f} GiB, over protobuf's 2 GiB "
            f"limit for a GraphDef: each of the {k} towers copies {tower / 2**20:.0f} MiB "
            f"(largest nodes: {', '.join(biggest)}); keep big tensors in variables, or share "
            "constants with a lower replicate: share_constants_over"
        )
