"""Where variables live: the nodes that must share a variable's device, moving them together, and
the assignment strategies of place-variables (least-loaded, balanced, round-robin)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

from . import devices as devmod
from . import opdefs
from .ir import names
from .ir.graph import Graph
from .ir.rewriter import Rewriter


def members(graph: Graph, var: str) -> list[str]:
    """`var` and every node that must sit on its device: nodes colocated with it (transitively,
    through `_class`) and nodes that take its ref or resource (reads, assigns, apply ops)."""
    out = [var]
    seen = {var}
    for user in graph.users(var):
        if user not in seen and opdefs.takes_state_from(graph.node(user), var):
            seen.add(user)
            out.append(user)
    i = 0
    while i < len(out):
        for user in graph.colocation_users(out[i]):
            if user not in seen:
                seen.add(user)
                out.append(user)
        i += 1
    return out


def group_device(graph: Graph, nodes: Sequence[str], device: str) -> str:
    """`device`, or its host CPU when one of `nodes` has no kernel for that device type."""
    dtype = devmod.device_type(device)
    if dtype == "CPU":
        return device
    for n in nodes:
        if not opdefs.has_kernel(graph.node(n), dtype):
            return devmod.host_of(device)
    return device


def move_variable(graph: Graph, rw: Rewriter, var: str, device: str) -> str:
    """Put `var` and its members on `device` (or its host, see group_device); return the device."""
    group = members(graph, var)
    dev = group_device(graph, group, device)
    for n in group:
        rw.set_device(n, dev)
    return dev


def settle(graph: Graph, rw: Rewriter, default_device: str, skip=frozenset(), copies: bool = True) -> None:
    """Give colocated nodes their target's device and unplaced nodes `default_device` (or, for a
    node reading a variable, the variable's device; for ops with no kernel there, the host).
    Nodes in `skip` were placed consistently when they were made; so were the tower copies'
    nodes unless `copies` (only those colocated with something can have moved with it)."""
    nodes = graph.parsed_nodes()
    if copies:
        nodes = chain(nodes, (graph.node(n) for n in graph.colocated_copy_nodes()))
    for node in nodes:
        if node.name in skip:
            continue
        targets = graph.colocation(node.name)
        if targets and targets[0] in graph and graph.node(targets[0]).device:
            if node.device != graph.node(targets[0]).device:
                rw.set_device(node.name, graph.node(targets[0]).device)
            continue
        if node.device:
            continue
        var_devices = [
            graph.node(names.node_of(r)).device
            for r in node.input
            if not r.startswith("^") and opdefs.is_variable_op(graph.producer_op(r))
        ]
        if var_devices and var_devices[0]:
            rw.set_device(node.name, var_devices[0])
        else:
            rw.set_device(node.name, devmod.for_node(node, default_device))


# -- strategies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """Bytes per device after an assignment, and how far the worst device is from ideal."""

    per_device: dict[str, int]
    largest: int

    @property
    def total(self) -> int:
        return sum(self.per_device.values())

    @property
    def lower_bound(self) -> float:
        """No assignment can load a device less than this: max(largest item, total / devices)."""
        return max(float(self.largest), self.total / max(len(self.per_device), 1))

    @property
    def imbalance(self) -> float:
        """max load / lower bound (1.0 is optimal)."""
        lb = self.lower_bound
        return max(self.per_device.values()) / lb if lb else 1.0


def least_loaded(sizes: Sequence[int], devices: Sequence[str]) -> list[str]:
    """Each item, in order, to the device with the least load so far (ties: the lower index).

    The reference behaviour (tensorpack's LeastLoadedDeviceSetter): greedy in graph order.
    """
    heap = [(0, i) for i in range(len(devices))]
    out = []
    for size in sizes:
        load, i = heapq.heappop(heap)
        out.append(devices[i])
        heapq.heappush(heap, (load + size, i))
    return out


def balanced(sizes: Sequence[int], devices: Sequence[str]) -> list[str]:
    """Largest item first to the least-loaded device (LPT scheduling): at most 4/3 of the
    optimal maximum load. An offline pass sees every variable first; a build-time setter cannot."""
    order = sorted(range(len(sizes)), key=lambda k: (-sizes[k], k))
    picked = least_loaded([sizes[k] for k in order], devices)
    out = [""] * len(sizes)
    for k, dev in zip(order, picked, strict=True):
        out[k] = dev
    return out


def round_robin(sizes: Sequence[int], devices: Sequence[str]) -> list[str]:
    return [devices[i % len(devices)] for i in range(len(sizes))]


STRATEGIES = {"least-loaded": least_loaded, "balanced": balanced, "round-robin": round_robin}


def load_of(sizes: Sequence[int], assignment: Sequence[str], devices: Sequence[str]) -> Load:
    per = {d: 0 for d in devices}
    for size, dev in zip(sizes, assignment, strict=True):
        per[dev] += size
    return Load(per, max(sizes, default=0))


def assign(strategy: str, sizes: Sequence[int], devices: Sequence[str]) -> list[str]:
    """The assignment `strategy` gives; `balanced` falls back to the greedy order in the rare
    cases where largest-first loses, so it is never worse than least-loaded."""
    out = STRATEGIES[strategy](sizes, devices)
    if strategy == "balanced":
        greedy = least_loaded(sizes, devices)
        if max(load_of(sizes, greedy, devices).per_device.values()) < max(
            load_of(sizes, out, devices).per_device.values()
        ):
            return greedy
    return out
