"""hierarchical: two halves of the devices; sum within each half on a rotating main device, add
the halves, copy back. The reference's DGX-1 scheme for 8 GPUs, for any even K."""

from __future__ import annotations

from ..context import RewriteContext
from ..errors import ConfigError
from .base import Algorithm, Builder


class Hierarchical(Algorithm):
    name = "hierarchical"
    summary = "AddN within each half of the devices on a main device that rotates per gradient"

    def check(self, ctx: RewriteContext) -> None:
        k = ctx.num_towers
        if k % 2:
            raise ConfigError(f"hierarchical all-reduce needs an even number of devices (got {k})")

    def build(self, b: Builder) -> list[str]:
        k = b.k
        half = k // 2
        main0 = b.ordinal % k
        main1 = (main0 + half) % k
        group = [d // half for d in range(k)]
        mine = [d for d in range(k) if group[d] == group[main0]]
        other = [d for d in range(k) if group[d] != group[main0]]
        dev0, dev1 = b.device(main0), b.device(main1)
        sum0 = b.add_n(None, [b.red.inputs[d] for d in mine], dev0, "group0_sum")
        sum1 = b.add_n(None, [b.red.inputs[d] for d in other], dev1, "group1_sum")
        total1 = b.add2(None, sum0, sum1, dev1, "group1_total")
        total0 = b.identity(None, total1, dev0, "group0_total")
        out = []
        for d in range(k):
            source = total0 if group[d] == group[main0] else total1
            local = b.identity(d, source, b.device(d), "total") if not b.average else source
            out.append(b.scaled(d, local, b.device(d)))
        return out
