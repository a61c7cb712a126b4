"""Where things run: the towers' devices and hosts, the variables' placement, and each copy's device."""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorflow.core.framework import types_pb2

from ... import devices as devmod
from ... import placement
from ...context import RewriteContext
from ...ir.graph import Graph
from .regions import Regions


@dataclass(frozen=True)
class Devices:
    """The towers' devices, with what placing a copy asks of them.

    `variables` and `replicas` are the context's maps (filled by `place_variables` and
    `variables.plan_replicas` before any copy is placed); the `_ok` dicts are memos."""

    towers: list[str]
    state: frozenset[str]
    variables: dict[str, str]
    replicas: dict[str, list[str]]
    hosts: dict[str, str]
    types: dict[str, str]
    kernel_ok: dict[tuple, bool] = field(default_factory=dict)
    group_ok: dict[tuple, bool] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: RewriteContext, regions: Regions) -> Devices:
        towers = ctx.devices
        return cls(
            towers,
            regions.state,
            ctx.variable_devices,
            ctx.replicas,
            {d: devmod.host_of(d) for d in towers},
            {d: devmod.device_type(d) for d in towers},
        )

    def group_device(self, g: Graph, var: str, device: str) -> str:
        """`device`, or its host if something that must sit with `var` has no kernel there."""
        key = (var, self.types.get(device) or devmod.device_type(device))
        ok = self.group_ok.get(key)
        if ok is None:
            ok = self.group_ok[key] = placement.group_device(g, placement.members(g, var), device) == device
        return device if ok else devmod.host_of(device)

    def var_device(self, v: str, i: int) -> str:
        """Where tower i's copy of variable `v` (its replica, or the one shared copy) lives."""
        if v in self.state and i > 0:
            return self.variables[self.replicas[v][i]]
        return self.variables[v] or self.towers[0]

    def device(self, kind: tuple, i: int) -> str:
        """Tower i's device for a node of placement `kind` (see `device_kind`, `slot`)."""
        if kind[0] == "var":
            return self.var_device(kind[1], i)
        dev = self.towers[i]
        if kind[0] == "host":
            return self.hosts[dev]
        if kind[0] == "any":
            return dev
        key = (id(kind[1]), self.types[dev])
        ok = self.kernel_ok.get(key)
        if ok is None:
            ok = self.kernel_ok[key] = devmod.for_node(kind[1], dev) == dev
        return dev if ok else self.hosts[dev]

    def slot(self, kind: tuple | None, one_type: bool) -> tuple | None:
        """`kind` as a key that says where a node goes in any tower: a compute node whose op has
        a kernel on the towers' (single) device type is ("any",), one that has not ("host",)."""
        if kind is None or kind[0] != "tower" or not one_type:
            return kind
        return ("any",) if self.device(kind, 0) == self.towers[0] else ("host",)


def device_kind(g: Graph, variables, n: str) -> tuple:
    """How region node `n`'s copies are placed: with the variable it reads, on the host, or on
    the tower's device if its op has a kernel there."""
    node = g.node(n)
    for p in g.data_inputs(n):
        v = p if p in variables else _variable_behind(g, variables, p)
        if v is not None:
            return ("var", v)
    if node.device and devmod.device_type(node.device) == "CPU":
        return ("host",)
    return ("tower", node)


def _variable_behind(g: Graph, variables, p: str) -> str | None:
    """The variable whose resource handle `p` passes on (an Enter into a loop frame, an
    Identity, a Switch: any op whose T is a resource), if any: TensorFlow places a reader of
    the handle with the variable, loop frames or not."""
    seen = set()
    while p not in variables:
        node = g.get(p)
        if node is None or p in seen or "T" not in node.attr or node.attr["T"].type != types_pb2.DT_RESOURCE:
            return None
        seen.add(p)
        data = g.data_inputs(p)
        if not data:
            return None
        p = data[0]
    return p


def place_variables(ctx: RewriteContext, devs: Devices, replicated: bool, ps_device: str | None) -> None:
    """Parameter server: every variable on the ps device. Replicated: canonical copies (and
    unplaced shared variables) on the first tower's device."""
    g, first = ctx.graph, devs.towers[0]
    for v in ctx.analysis.variables:
        node = g.node(v)
        if not replicated:
            target = ps_device or (ctx.ps_devices or [first])[0]
        elif v in devs.state or not node.device:
            target = first
        else:
            ctx.variable_devices[v] = node.device
            continue
        dev = devs.group_device(g, v, target)
        ctx.rewriter.set_device(v, dev)
        ctx.variable_devices[v] = dev
