"""naive: AddN of all towers' gradients on one device (round-robin over gradients), copied back."""

from __future__ import annotations

from .base import Algorithm, Builder


class Naive(Algorithm):
    name = "naive"
    all_reduce = False
    summary = "AddN on one device per gradient, chosen round-robin; every tower reads the result"

    def build(self, b: Builder) -> list[str]:
        dev = b.device(b.ordinal % b.k)
        total = b.scaled(None, b.add_n(None, list(b.red.inputs), dev), dev)
        return [total] * len(b.red.outputs)
