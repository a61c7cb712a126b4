"""Replicas and mirrors of replicated variables: their names and devices, and each tower's nodes for them."""

from __future__ import annotations

from typing import NamedTuple

from ... import gradients, opdefs
from ...context import RewriteContext
from ...errors import InvalidGraphError
from ...ir import names
from ...ir.graph import Graph, NodeDef
from ...naming import tower_name, tower_prefix
from .devices import Devices
from .nodes import check_free
from .regions import Regions


class Mirror(NamedTuple):
    """A write of replicated `variable` outside the training step, made again in every tower."""

    node: NodeDef  # the original write (its copies read what it reads when the towers are built)
    variable: str


def plan_replicas(ctx: RewriteContext, regions: Regions, devs: Devices) -> tuple[str, ...]:
    """Name and place every replica now (in `ctx.replicas`, `ctx.variable_devices`); the nodes
    are made with their tower. Returns the replicated variables in graph order."""
    g, k = ctx.graph, ctx.num_towers
    order = tuple(v for v in g.names() if v in regions.state)
    for v in order:
        ctx.replicas[v] = [v] + [tower_name(i, v) for i in range(1, k)]
        for i in range(1, k):
            ctx.variable_devices[ctx.replicas[v][i]] = devs.group_device(g, v, devs.towers[i])
    return order


def plan_mirrors(
    ctx: RewriteContext, regions: Regions, replicas: tuple[str, ...], original: frozenset[str]
) -> tuple[Mirror, ...]:
    """Writes to a replicated variable outside the training step (initializers, restores, user
    assigns) also write every replica, with the same value, before the original runs. The
    originals get their control inputs now; the mirror nodes come with their tower, and read
    what the original reads by then (a value computed in the towers: tower 0's copy)."""
    g, library = ctx.graph, ctx.analysis.library
    mirrors: list[Mirror] = []
    seen: set[str] = set()
    for v in replicas:
        for user in g.users(v):
            if user in regions.region or user not in original or user in seen:
                continue
            node = g.node(user)
            positions = gradients.written_positions(node, library)
            if not any(names.node_of(node.input[p]) == v for p in positions if p < len(node.input)):
                continue
            if user in regions.data_dep:
                raise InvalidGraphError(
                    f"node '{user}' ({node.op}) updates trainable variable '{v}' from tower data "
                    "outside an optimizer apply op; graphpass cannot keep replicas in sync"
                )
            seen.add(user)
            mirrors.append(Mirror(node, v))
    for node, _ in mirrors:
        ctx.rewriter.add_control_inputs(
            node.name, [tower_name(i, node.name) for i in range(1, ctx.num_towers)]
        )
    return tuple(mirrors)


def tower_extras(
    ctx: RewriteContext, devs: Devices, replicas: tuple[str, ...], mirrors: tuple[Mirror, ...], i: int
) -> list:
    """Tower i's replicas and mirrored writes (i >= 1), as NodeDefs."""
    g = ctx.graph
    out = []
    for v in replicas:
        src = g.node(v)
        node = _copy(g, devs, src, ctx.replicas[v][i], [], i)
        if opdefs.is_resource_variable_op(src.op) and "shared_name" in src.attr:
            node.attr["shared_name"].s = tower_prefix(i).encode() + (src.attr["shared_name"].s or v.encode())
        node.device = ctx.variable_devices[node.name]
        out.append(node)
    for src, v in mirrors:
        data = [_replica_ref(devs, r, i) for r in src.input if not r.startswith("^")]
        mirror = _copy(g, devs, src, tower_name(i, src.name), data, i)
        mirror.device = devs.var_device(v, i)
        out.append(mirror)
    return out


def extras_devices(
    devs: Devices, replicas: tuple[str, ...], mirrors: tuple[Mirror, ...], i: int
) -> list[str]:
    """The devices of tower i's replicas and mirrors, in `tower_extras`' order."""
    return [devs.variables[devs.replicas[v][i]] for v in replicas] + [
        devs.var_device(v, i) for _, v in mirrors
    ]


def _copy(g: Graph, devs: Devices, src, name: str, inputs: list[str], i: int):
    """A NodeDef like `src`, named `name`, reading `inputs`, colocated with tower i's copies."""
    check_free(g, name)
    node = g.new_node()
    node.CopyFrom(src)
    node.name = name
    del node.input[:]
    node.input.extend(inputs)
    node.device = ""
    if names.COLOCATION_ATTR in node.attr:
        names.set_colocation(
            node,
            [devs.replicas[t][i] if t in devs.state else t for t in names.colocation_targets(node)],
        )
    return node


def _replica_ref(devs: Devices, ref: str, i: int) -> str:
    r = names.parse(ref)
    if r.node in devs.state:
        return str(names.Ref(devs.replicas[r.node][i], r.index, r.control))
    return ref
