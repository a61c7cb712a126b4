"""halving-doubling: recursive halving reduce-scatter, then recursive doubling all-gather (K = 2^n)."""

from __future__ import annotations

from ..context import RewriteContext
from ..errors import ConfigError
from .base import Algorithm, Builder, chunk_sizes


class HalvingDoubling(Algorithm):
    name = "halving-doubling"
    summary = "log2(K) exchange steps with partners at distance K/2, K/4, ..., 1 and back"

    def check(self, ctx: RewriteContext) -> None:
        k = ctx.num_towers
        if k & (k - 1):
            raise ConfigError(f"halving-doubling all-reduce needs a power-of-two device count (got {k})")

    def build(self, b: Builder) -> list[str]:
        k = b.k
        sizes = chunk_sizes(b.num_elements(), k)
        held = [dict(enumerate(b.split(d, b.flatten(d, b.device(d)), sizes, b.device(d)))) for d in range(k)]
        owned = [list(range(k)) for _ in range(k)]
        step, h = 0, k // 2
        while h >= 1:
            new_held, new_owned = [], []
            for d in range(k):
                p = d ^ h
                half = len(owned[d]) // 2
                keep = owned[d][:half] if not d & h else owned[d][half:]
                new_owned.append(keep)
                new_held.append(
                    {c: b.add2(d, held[d][c], held[p][c], b.device(d), f"halving{step}") for c in keep}
                )
            held, owned = new_held, new_owned
            h //= 2
            step += 1
        h, step = 1, 0
        while h < k:
            new_held = []
            for d in range(k):
                p = d ^ h
                got = {c: b.identity(d, held[p][c], b.device(d), f"doubling{step}") for c in owned[p]}
                new_held.append({**held[d], **got})
            owned = [sorted(owned[d] + owned[d ^ h]) for d in range(k)]
            held = new_held
            h *= 2
            step += 1
        return [b.finish(d, b.concat(d, [held[d][c] for c in range(k)], b.device(d))) for d in range(k)]
