"""hierarchical: sum within groups of devices on a main device that rotates per gradient, add the
group sums, copy back. On one machine the groups are its two halves (the reference's DGX-1 scheme
for 8 GPUs, for any even K); across machines each worker is a group (reduce within the worker,
across workers, broadcast back)."""

from __future__ import annotations

from .. import devices as devmod
from ..context import RewriteContext
from ..errors import ConfigError
from .base import Algorithm, Builder


def groups_of(devices: list[str]) -> list[list[int]]:
    """Tower indices grouped by worker task, or in two halves on a single machine."""
    tasks = list(dict.fromkeys(devmod.task_of(d) for d in devices))
    if len(tasks) > 1:
        return [[i for i, d in enumerate(devices) if devmod.task_of(d) == t] for t in tasks]
    half = len(devices) // 2
    return [list(range(half)), list(range(half, len(devices)))]


class Hierarchical(Algorithm):
    name = "hierarchical"
    summary = "AddN within each group of devices (a worker, or half a machine), then across groups"

    def check(self, ctx: RewriteContext) -> None:
        k = ctx.num_towers
        single_machine = len({devmod.task_of(d) for d in ctx.devices}) == 1
        if single_machine and k % 2:
            raise ConfigError(f"hierarchical all-reduce needs an even number of devices (got {k})")

    def build(self, b: Builder) -> list[str]:
        groups = groups_of(b.ctx.devices)
        r = b.ordinal
        mains = [g[r % len(g)] for g in groups]
        sums = [
            b.add_n(None, [b.red.inputs[d] for d in g], b.device(m), f"group{n}_sum")
            for n, (g, m) in enumerate(zip(groups, mains, strict=True))
        ]
        top = r % len(groups)
        total = b.add_n(None, sums, b.device(mains[top]), "total")
        copies = [
            total if n == top else b.identity(None, total, b.device(m), f"group{n}_total")
            for n, m in enumerate(mains)
        ]
        out = [""] * b.k
        for n, g in enumerate(groups):
            for d in g:
                local = copies[n] if b.average else b.identity(d, copies[n], b.device(d), "total")
                out[d] = b.scaled(d, local, b.device(d))
        return out
