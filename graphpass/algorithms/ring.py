"""ring: chunked reduce-scatter then all-gather around the ring of devices, from AddV2/Identity."""

from __future__ import annotations

from .base import Algorithm, Builder, chunk_sizes


class Ring(Algorithm):
    name = "ring"
    summary = "K chunks; K-1 steps of pass-and-add around the ring, then K-1 steps of pass-along"

    def build(self, b: Builder) -> list[str]:
        k = b.k
        sizes = chunk_sizes(b.num_elements(), k)
        chunks = [b.split(d, b.flatten(d, b.device(d)), sizes, b.device(d)) for d in range(k)]
        # reduce-scatter: at step s device d passes chunk (d - s) to d + 1, which adds its own
        for s in range(k - 1):
            sent = [(d, (d - s) % k, chunks[d][(d - s) % k]) for d in range(k)]
            for d, c, tensor in sent:
                r = (d + 1) % k
                chunks[r][c] = b.add2(r, chunks[r][c], tensor, b.device(r), f"reduce_step{s}")
        # device d now holds the full sum of chunk d + 1; all-gather passes them along
        for s in range(k - 1):
            sent = [(d, (d + 1 - s) % k, chunks[d][(d + 1 - s) % k]) for d in range(k)]
            for d, c, tensor in sent:
                r = (d + 1) % k
                chunks[r][c] = b.identity(r, tensor, b.device(r), f"gather_step{s}")
        return [b.finish(d, b.concat(d, chunks[d], b.device(d))) for d in range(k)]
