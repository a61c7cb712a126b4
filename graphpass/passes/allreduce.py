"""allreduce: build the pending gradient reductions with the chosen algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tensorflow.core.framework import types_pb2

from ..algorithms import ALGORITHMS
from ..algorithms.base import Builder
from ..algorithms.collective import Collective
from ..algorithms.gather import build_gather
from ..context import Reduction, RewriteContext
from ..errors import ConfigError
from ..ir import names
from ..ir.rewriter import type_attr
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
    group_key: int | None = option(
        None, "collective only: the group key (default: derived from the device list)"
    )
    instance_key_base: int | None = option(
        None, "collective only: the first instance key (default: derived from the gradients)"
    )
    sparse: Literal["gather", "dense"] = option(
        "gather",
        "sparse gradients: gather every tower's rows (exact), or scatter them into a dense tensor "
        "reduced like the others (then every row is updated: zero rows still decay momentum)",
    )

    def run(self, ctx: RewriteContext) -> PassResult:
        if ctx.mode is None:
            raise ConfigError("'allreduce' needs a 'replicate' pass before it")
        algo = ALGORITHMS[self.algorithm]
        if self.algorithm == "collective":
            for key in (self.group_key, self.instance_key_base):
                if key is not None and not 0 < key < 2**31 - 2**20:
                    raise ConfigError("allreduce: collective keys must be positive 31-bit integers")
            algo = Collective(self.communication_hint, self.group_key, self.instance_key_base)
        elif self.communication_hint != "auto" or self.group_key or self.instance_key_base:
            raise ConfigError(
                "allreduce: communication_hint, group_key and instance_key_base apply to algorithm: "
                "collective only"
            )
        if not ctx.pending:
            return PassResult(False, "no gradients left to reduce")
        if algo.all_reduce and any(not r.all_reduce and r.kind == "dense" for r in ctx.pending):
            raise ConfigError(
                f"'{self.algorithm}' gives every tower a copy, but mode parameter_server aggregates "
                "once: use algorithm colocate or naive"
            )
        if self.sparse == "dense":
            ctx.pending = _densify(ctx, ctx.pending)
        algo.check(ctx)
        algo.prepare(ctx)
        rw = ctx.rewriter
        start = len(ctx.reduced)
        shared: dict = {}
        for ordinal, red in enumerate(ctx.pending, start):
            builder = Builder(ctx, red, ordinal, self.average, shared)
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


def _densify(ctx: RewriteContext, pending: list[Reduction]) -> list[Reduction]:
    """Each sparse gradient (values + indices) becomes one dense reduction: per tower an
    UnsortedSegmentSum into the variable's rows; the indices outputs become Range(rows)."""
    indices = {r.variables[0]: r for r in pending if r.kind == "indices"}
    out = []
    rw = ctx.rewriter
    for red in pending:
        if red.kind == "indices":
            continue
        if red.kind == "dense":
            out.append(red)
            continue
        var = ctx.analysis.variables[red.variables[0]]
        partner = indices.get(var.name)
        if partner is None or not var.shape or var.shape[0] < 0:
            raise ConfigError(
                f"cannot densify the sparse gradient of '{var.name}': its variable needs a static "
                "first dimension and the gradient its indices"
            )
        rows = var.shape[0]
        i32 = types_pb2.DT_INT32
        dense_inputs = []
        for i, (values, idx) in enumerate(zip(red.inputs, partner.inputs, strict=True)):
            dev = ctx.devices[i]
            scope = names.tower_name(i, f"allreduce/{red.variables[0]}/densify")
            n = rw.const(rw.unique_name(f"{scope}/rows"), rows, i32, dev).name
            dense_inputs.append(
                rw.add(
                    rw.unique_name(f"{scope}/scatter"),
                    "UnsortedSegmentSum",
                    [values, idx, n],
                    {
                        "T": type_attr(red.dtype),
                        "Tindices": type_attr(partner.dtype),
                        "Tnumsegments": type_attr(i32),
                    },
                    dev,
                ).name
            )
        for sink in partner.outputs:
            dev = ctx.graph.node(sink).device
            base = rw.unique_name(f"{sink}/all_rows")
            start = rw.const(f"{base}/start", 0, partner.dtype, dev).name
            limit = rw.const(f"{base}/limit", rows, partner.dtype, dev).name
            delta = rw.const(f"{base}/delta", 1, partner.dtype, dev).name
            rw.add(base, "Range", [start, limit, delta], {"Tidx": type_attr(partner.dtype)}, dev)
            rw.set_inputs(sink, [base])
        shape = [rows] + list(var.shape[1:])
        out.append(Reduction(red.variables[0], dense_inputs, red.outputs, red.dtype, shape, red.variables))
    return out
