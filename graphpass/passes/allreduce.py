"""allreduce: build the pending gradient reductions with the chosen algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..algorithms import ALGORITHMS
from ..algorithms.base import Builder
from ..algorithms.collective import Collective
from ..algorithms.gather import build_gather
from ..context import RewriteContext
from ..errors import ConfigError
from ..ir import names
from .base import Pass, PassResult, option


@dataclass(frozen=True)
class AllReduce(Pass):
    name = "allreduce"
    summary = "sum or average every gradient across the towers before the optimizer uses it"

    algorithm: Literal[
        "nccl", "collective", "hierarchical", "naive", "colocate", "ring", "halving-doubling"
    ] = option("nccl", "how gradients are reduced (see README: All-reduce algorithms)")
    average: bool = option(True, "divide the sum by the number of towers (for mean losses)")
    communication_hint: Literal["auto", "ring", "nccl"] = option(
        "auto", "collective only: the implementation TensorFlow should pick"
    )

    def run(self, ctx: RewriteContext) -> PassResult:
        if ctx.mode is None:
            raise ConfigError("'allreduce' needs a 'replicate' pass before it")
        algo = ALGORITHMS[self.algorithm]
        if self.algorithm == "collective":
            algo = Collective(self.communication_hint)
        elif self.communication_hint != "auto":
            raise ConfigError("allreduce: communication_hint applies to algorithm: collective only")
        if not ctx.pending:
            return PassResult(False, "no gradients left to reduce")
        if algo.all_reduce and any(not r.all_reduce and r.kind == "dense" for r in ctx.pending):
            raise ConfigError(
                f"'{self.algorithm}' gives every tower a copy, but mode parameter_server aggregates "
                "once: use algorithm colocate or naive"
            )
        algo.check(ctx)
        algo.prepare(ctx)
        rw = ctx.rewriter
        start = len(ctx.reduced)
        for ordinal, red in enumerate(ctx.pending, start):
            builder = Builder(ctx, red, ordinal, self.average)
            results = algo.build(builder) if red.kind == "dense" else build_gather(builder)
            for sink, tensor in zip(red.outputs, results, strict=True):
                rw.set_inputs(sink, [tensor] + [names.control(c) for c in _controls(ctx, sink)])
            ctx.reduced.append((red, self.algorithm))
        dense = sum(r.kind == "dense" for r in ctx.pending)
        sparse = sum(r.kind == "values" for r in ctx.pending)
        ctx.pending = []
        verb = "averaged" if self.average else "summed"
        summary = f"{dense} gradients {verb} with {self.algorithm}"
        if sparse:
            summary += f", {sparse} sparse gradients gathered"
        return PassResult(True, summary, {"reductions": dense, "sparse": sparse})


def _controls(ctx: RewriteContext, sink: str) -> list[str]:
    return [names.node_of(r) for r in ctx.graph.node(sink).input if r.startswith("^")]
