"""allreduce: build the pending gradient reductions with the chosen algorithm."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from tensorflow.core.framework import types_pb2

from .. import algorithms, naming
from ..algorithms.base import Builder
from ..algorithms.gather import build_gather
from ..context import Reduction, RewriteContext
from ..errors import ConfigError, plural
from ..ir import names
from ..ir.rewriter import type_attr
from ..options import Option, options_of
from .base import Pass, PassResult, option


@dataclass(frozen=True)
class AllReduce(Pass):
    """The pass's own options are fields; an algorithm's own (collective's keys, say) are given
    beside `algorithm:` in a rules file and held, typed, in `algorithm_options`: an instance of
    the algorithm's `Options` dataclass (None: its defaults)."""

    name = "allreduce"
    summary = "sum or average every gradient across the towers before the optimizer uses it"
    requires = ("towers",)
    provides = ("reduced-gradients",)

    algorithm: str = option(
        "nccl", "how gradients are reduced (see README: `allreduce`)", choices=algorithms.names
    )
    average: bool = option(True, "divide the sum by the number of towers (for mean losses)")
    sparse: Literal["gather", "dense"] = option(
        "gather",
        "sparse gradients: gather every tower's rows (exact), or scatter them into a dense tensor "
        "reduced like the others (then every row is updated: zero rows still decay momentum)",
    )
    algorithm_options: Any = field(default=None, compare=True)

    def __post_init__(self) -> None:
        cls = algorithms.get(self.algorithm)
        opts = self.algorithm_options
        if opts is not None and (cls.Options is None or not isinstance(opts, cls.Options)):
            want = f"a {cls.Options.__name__}" if cls.Options else "none"
            raise ConfigError(
                f"allreduce: algorithm {self.algorithm} takes {want} as its options, "
                f"not {type(opts).__name__}"
            )

    @classmethod
    def options(cls) -> list[Option]:
        """The pass's options, then every algorithm's own, each saying which algorithm takes it."""
        out = options_of(cls)
        for opt, takers in algorithms.all_options().values():
            out.append(
                Option(opt.name, opt.type, opt.default, f"{', '.join(takers)} only: {opt.help}", opt.allowed)
            )
        return out

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> AllReduce:
        own = {f.name for f in fields(cls)} - {"algorithm_options"}
        mine = {k: v for k, v in values.items() if k in own}
        algorithm = mine.get("algorithm", cls.algorithm)
        algo = algorithms.get(algorithm)
        given = {k: v for k, v in values.items() if k not in own}
        known = algorithms.all_options()
        unknown = [k for k in given if k not in known]
        if unknown:
            valid = ", ".join(o.name for o in cls.options())
            raise ConfigError(f"pass 'allreduce' has no option '{unknown[0]}'; valid options: {valid}")
        takes = {o.name for o in algorithms.options(algorithm)}
        # an algorithm's option left at its default may be spelled out for any algorithm
        foreign = [k for k, v in given.items() if k not in takes and v != known[k][0].default]
        if foreign:
            takers = ", ".join(sorted({a for k in foreign for a in known[k][1]}))
            verb = "applies" if len(foreign) == 1 else "apply"
            raise ConfigError(
                f"allreduce: {', '.join(foreign)} {verb} to algorithm: {takers} only, not {algorithm}"
            )
        mine_opts = {k: v for k, v in given.items() if k in takes}
        if algo.Options is not None and mine_opts:
            mine["algorithm_options"] = algo.Options(**mine_opts)
        return cls(**mine)

    def run(self, ctx: RewriteContext) -> PassResult:
        algo = algorithms.get(self.algorithm)(self.algorithm_options)
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
        pieces = {key: pack for pack in ctx.packs for key in pack.pieces}
        in_packs = [r for r in ctx.pending if r.key in pieces]
        packed = sum(len(p.gradients) for p in {id(pieces[r.key]): pieces[r.key] for r in in_packs}.values())
        ctx.pending = []
        verb = "averaged" if self.average else "summed"
        summary = f"{plural(dense - len(in_packs) + packed, 'gradient')} {verb} with {self.algorithm}"
        if in_packs:
            summary += f", {packed} of them in {plural(len(in_packs), 'pack')}"
        if sparse:
            summary += f", {plural(sparse, 'sparse gradient')} gathered"
        return PassResult(True, summary, {"reductions": dense, "sparse": sparse, "packed": packed})


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
            scope = f"{naming.allreduce_scope(red.variables[0], i)}/densify"
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
