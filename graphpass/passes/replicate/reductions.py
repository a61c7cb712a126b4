"""Reductions: the sinks (Identity nodes readers of a reduced gradient read) and their registration."""

from __future__ import annotations

from ... import opdefs
from ...context import Reduction, RewriteContext
from ...errors import InvalidGraphError
from ...ir import names
from ...ir.rewriter import type_attr
from ...naming import reduced_scope, tower_name, tower_prefix
from .devices import Devices
from .regions import Regions

Sinks = dict[str, tuple[str, ...]]  # by raw gradient tensor: its sinks, one per tower or a single one


def make_sinks(ctx: RewriteContext, regions: Regions, devs: Devices, replicated: bool) -> Sinks:
    """One sink per tower for each raw gradient (replicated mode), else one on its variable's
    device; each reads tower 0's (or its own tower's) gradient until a reduction repoints it."""
    g, rw, k = ctx.graph, ctx.rewriter, ctx.num_towers
    sinks: Sinks = {}
    for t, grad in regions.raw.items():
        producer, index = names.node_of(t), names.parse(t).index
        dtype = opdefs.output_dtype(g.node(producer), index)
        key = _sink_key(grad)
        if replicated:
            outs = []
            base = rw.unique_base(reduced_scope(key), [tower_prefix(i) for i in range(k)])
            for i in range(k):
                name = tower_name(i, base)
                copy = names.tensor(tower_name(i, producer), index)
                rw.add(name, "Identity", [copy], {"T": type_attr(dtype)}, devs.towers[i])
                rw.record_tower(name, i, base)
                outs.append(name)
        else:
            name = rw.unique_name(reduced_scope(key))
            first = names.tensor(tower_name(0, producer), index)
            var = grad.variable
            rw.add(name, "Identity", [first], {"T": type_attr(dtype)}, devs.var_device(var, 0), [var])
            outs = [name]
        sinks[t] = tuple(outs)
    return sinks


def register_reductions(ctx: RewriteContext, regions: Regions, sinks: Sinks) -> None:
    """Append to `ctx.pending` one Reduction per raw gradient, after checking that its shape
    fits what it was taken for."""
    g, k = ctx.graph, ctx.num_towers
    keys: set[str] = set()
    for t, grad in regions.raw.items():
        producer, index = names.node_of(t), names.parse(t).index
        var = ctx.analysis.variables[grad.variable]
        shape = var.shape if grad.kind == "dense" and var.num_elements is not None else None
        if shape is not None and (_scope_is_guess(ctx, t) or not _applied(ctx, grad)):
            _check_gradient_shape(ctx, t, grad.variable, shape)
        elif grad.kind != "dense":  # its shape is asked for anyway
            _check_sparse_part(ctx, t, grad.variable)
        key = base = _sink_key(grad)
        n = 0
        while key in keys:  # one variable, several gradients (two losses, two optimizers)
            n += 1
            key = f"{base}_{n}"
        keys.add(key)
        ctx.pending.append(
            Reduction(
                key=key,
                inputs=[names.tensor(tower_name(i, producer), index) for i in range(k)],
                outputs=list(sinks[t]),
                dtype=opdefs.output_dtype(g.node(producer), index),
                shape=shape if shape is not None else ctx.shapes.shape(t),
                variables=[grad.variable],
                kind=grad.kind,
            )
        )


def _sink_key(grad) -> str:
    return grad.variable if grad.kind == "dense" else f"{grad.variable}/{grad.kind}"


def _scope_is_guess(ctx: RewriteContext, t: str) -> bool:
    """Whether gradient `t` was told apart by a weak sign: a scope merely named
    `gradient_tape`, or no gradient scope at all (scopes read from the forward ops their
    `<op>_grad` groups differentiate are exact)."""
    return not ctx.analysis.backward.exact(names.node_of(t))


def _applied(ctx: RewriteContext, grad) -> bool:
    """Whether only optimizer apply ops update with `grad` (plain writes, like assigns, are
    updates by a weaker sign: their value comes from the backward pass)."""
    return all(opdefs.apply_signature(ctx.graph.node(u).op) for u in grad.updates)


def _check_gradient_shape(ctx: RewriteContext, t: str, var: str, shape: list[int]) -> None:
    """A dense gradient has its variable's shape; if TensorFlow infers another, the gradient
    was misread (a user scope taken for a gradient scope, say) and must not be reduced."""
    static = ctx.shapes.shape(t)
    if static is not None and None not in static and static != shape:
        raise InvalidGraphError(
            f"tensor '{t}', taken for the gradient of '{var}', has shape {static} but the "
            f"variable has {shape}: graphpass cannot tell this graph's gradients apart"
        )


def _check_sparse_part(ctx: RewriteContext, t: str, var: str) -> None:
    """The indices and values of a sparse gradient have a first axis to gather along; a scalar
    taken for one means the gradient was misread."""
    static = ctx.shapes.shape(t)
    if static is not None and len(static) == 0:
        raise InvalidGraphError(
            f"tensor '{t}', taken for part of a sparse gradient of '{var}', is a scalar: "
            "graphpass cannot tell this graph's gradients apart"
        )
