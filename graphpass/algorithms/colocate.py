"""colocate: AddN on the device of the gradient's variable (parameter-server aggregation)."""

from __future__ import annotations

from .base import Algorithm, Builder


class Colocate(Algorithm):
    name = "colocate"
    all_reduce = False
    summary = "AddN on the device where the gradient is used (the variable's, in parameter_server mode)"

    def build(self, b: Builder) -> list[str]:
        dev = b.ctx.graph.node(b.red.outputs[0]).device or b.device(0)
        total = b.scaled(None, b.add_n(None, list(b.red.inputs), dev), dev)
        return [total] * len(b.red.outputs)
