"""place-variables: spread parameter-server variables over devices by bytes (greedy, largest
first or round-robin), small ones optionally on one device; each variable's state follows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .. import devices as devmod
from .. import placement
from ..context import RewriteContext
from ..errors import ConfigError, plural
from .base import Pass, PassResult, option


@dataclass(frozen=True)
class PlaceVariables(Pass):
    name = "place-variables"
    summary = (
        "put each variable (with its slots, initializer, reads and updates) on a parameter-server device"
    )
    requires = ("towers",)
    provides = ("variable-placement",)

    strategy: Literal["least-loaded", "balanced", "round-robin"] = option(
        "least-loaded",
        "least-loaded: greedy in graph order (the reference); balanced: largest first; round-robin",
    )
    devices: list[str] | None = option(None, "parameter-server devices (default: the tower devices)")
    small_bytes: int = option(
        0, "variables under this many bytes (with their slots) go to small_device; 0 turns it off"
    )
    small_device: str | None = option(None, "where small variables go (default: the first ps device)")

    def run(self, ctx: RewriteContext) -> PassResult:
        if ctx.mode != "parameter_server":
            raise ConfigError(
                "place-variables needs 'replicate' with mode: parameter_server (replicated mode "
                "keeps a copy of each variable on every tower)"
            )
        targets = devmod.parse_devices(self.devices) if self.devices else list(ctx.ps_devices or ctx.devices)
        small_dev = devmod.canonical(self.small_device) if self.small_device else targets[0]
        if self.small_bytes < 0:
            raise ConfigError("place-variables: small_bytes must be 0 or more")
        groups = _groups(ctx)
        sizes = [size for _, size in groups]
        large = [k for k, s in enumerate(sizes) if s >= self.small_bytes]
        chosen = placement.assign(self.strategy, [sizes[k] for k in large], targets)
        where = {k: small_dev for k in range(len(groups))}
        where.update(dict(zip(large, chosen, strict=True)))
        load = {d: 0 for d in dict.fromkeys(targets + [small_dev])}
        for k, (owners, size) in enumerate(groups):
            for v in owners:
                ctx.variable_devices[v] = placement.move_variable(ctx.graph, ctx.rewriter, v, where[k])
            load[where[k]] += size
        placement.settle(ctx.graph, ctx.rewriter, ctx.devices[0])
        report = placement.Load(load, max(sizes, default=0))
        per_device = ", ".join(f"{_short(d)} {_size(n)}" for d, n in load.items())
        return PassResult(
            True,
            f"{plural(len(groups), 'variable')} by {self.strategy}: {per_device}; imbalance "
            f"{report.imbalance:.2f} (max / lower bound {_size(int(report.lower_bound))})",
            {"load": load, "imbalance": report.imbalance, "lower_bound": report.lower_bound},
        )


def _groups(ctx: RewriteContext) -> list[tuple[list[str], int]]:
    """Each variable with the variables that must live with it, and their bytes together, in
    graph order: its slots, and variables colocated with it (Adam's beta powers are created so)."""
    variables = ctx.analysis.variables
    owner: dict[str, str] = {}
    for v in variables.values():
        if v.slot_of:
            owner[v.name] = v.slot_of
            continue
        target = next(
            (t for t in ctx.graph.colocation(v.name) if t in variables and t != v.name),
            None,
        )
        if target is not None:
            owner[v.name] = target
    members: dict[str, list[str]] = {}
    for v in variables:
        members.setdefault(_root(v, owner), []).append(v)
    out = []
    for root, group in members.items():
        owners = [root] + [v for v in group if v != root]
        out.append((owners, sum(variables[o].nbytes for o in owners)))
    return out


def _root(v: str, owner: dict[str, str]) -> str:
    """The variable `v`'s owner chain ends at; for a chain that runs in a circle (a malformed
    graph whose variables are each other's slots), the circle's first name in sorted order."""
    on_path: dict[str, int] = {}
    path: list[str] = []
    while v in owner and v not in on_path:
        on_path[v] = len(path)
        path.append(v)
        v = owner[v]
    return min(path[on_path[v] :]) if v in on_path else v


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _short(device: str) -> str:
    return device.replace("/device:", "")
