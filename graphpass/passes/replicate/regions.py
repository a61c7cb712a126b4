"""The regions stage: which single-tower nodes are copied per tower (tower, update) and which stay global."""

from __future__ import annotations

from dataclasses import dataclass

from ... import gradients, opdefs
from ...analysis import INPUT_OPS, Input
from ...context import RewriteContext
from ...ir import names


@dataclass(frozen=True)
class Regions:
    """The single tower's regions, read while the originals are intact.

    `order` (graph order, which the copies keep) holds the region, `tower` and `update` split it;
    `state` are the variables replicated per tower (none in parameter-server mode); `raw` the
    gradients to reduce (those that depend on the batch or on replicas)."""

    state: frozenset[str]
    batched: dict[str, Input]  # the inputs whose batch is split, by name
    raw: dict[str, gradients.Gradient]  # by tensor
    data_dep: frozenset[str]  # what depends on the batch or on a per-tower source
    dep: frozenset[str]  # ... or on a replicated variable
    order: tuple[str, ...]
    region: frozenset[str]
    tower: frozenset[str]
    update: frozenset[str]
    tower0_only: frozenset[str]  # writes of untrained variables, and what only they need
    drawn: tuple[str, ...] = ()  # input pipelines each tower draws its own batch from (tf.data, queues)


def find_regions(ctx: RewriteContext, replicated: bool, share_constants_over: int) -> Regions:
    """Decide the regions of `ctx`'s graph (see the package docstring)."""
    g, a = ctx.graph, ctx.analysis
    variables = a.variables
    state = set(a.replicated_state) if replicated else set()
    split = set(ctx.batch.split)
    batched = {i.name: i for i in a.inputs if i.name in split}
    raw = {gr.tensor: gr for gr in a.gradients}
    raw_nodes = {names.node_of(t) for t in raw}

    def written(n: str) -> list[str]:
        return gradients.written_variables(g, n, variables, a.library)

    # Shared by all towers: variables, placeholders (split or shared), big constants, and
    # persistent resources (stateful ops without inputs that make handles: tables, queues,
    # iterators; an Unstage makes data, each tower's its own). Every other op is copied per tower.
    shared = set(variables) | set(batched)
    for n, node in zip(g.names(), g.nodes(), strict=True):
        op = node.op
        if (
            op in INPUT_OPS  # feed points: a scalar (learning rate, flag) is shared
            or (op == "Const" and node.attr["value"].tensor.ByteSize() > share_constants_over)
            or (
                opdefs.is_stateful(op)
                and not any(r[:1] != "^" for r in node.input)
                and opdefs.makes_handles(op)
            )
        ):
            shared.add(n)
    excluded = shared.__contains__

    roots = [u.name for u in a.updates] if replicated else sorted(raw_nodes)
    if replicated:
        # Every write of replicated state that the step makes after its updates (zeroing an
        # accumulator once it is applied) writes each tower's replica.
        after = g.descendants(roots)
        updates = set(roots)
        roots += [
            n for n in g.names() if n in after and n not in updates and any(v in state for v in written(n))
        ]
    # Per-tower sources: the fed batch, and stateful ops that do not read a variable (each
    # tower's IteratorGetNext draws its own batch; stacks and TensorArrays are per step).
    upstream = g.ancestors(roots, stop=excluded)
    sources = list(batched) + [
        n
        for n in g.names()
        if n in upstream
        and not excluded(n)
        and opdefs.is_stateful(g.node(n).op)
        and not _reads_variable(ctx, n)
    ]
    data_dep = g.descendants(sources)
    dep = data_dep | g.descendants(sorted(state))
    after_cut = g.descendants(raw_nodes)
    # Dead ends of the backward pass (gradients w.r.t. inputs, unused shapes) belong to the
    # tower too: left global they would read merged copies for nothing.
    backward = a.backward.nodes
    roots += [n for n in g.names() if n in backward and n in data_dep and n not in after_cut]
    region = g.ancestors(roots, stop=excluded) - shared
    before_cut = g.ancestors(raw_nodes, stop=excluded)
    update = {n for n in region if n in after_cut and n not in before_cut}
    tower = region - update
    # Gradients that do not depend on the batch (or on replicas) are equal in every tower and
    # need no reduction; gathering them would even repeat sparse indices K times.
    raw = {t: gr for t, gr in raw.items() if names.node_of(t) in tower and names.node_of(t) in dep}
    # Writes to variables that are not trained (BatchNorm moving statistics under
    # control_dependencies(update_ops)) run once, in tower 0; so does what only they need.
    tower0_only: set[str] = set()
    writes = {
        n
        for n in region
        if not opdefs.apply_signature(g.node(n).op) and any(v not in state for v in written(n))
    }
    if writes:
        rest = g.ancestors(roots, stop=(shared | writes).__contains__)
        tower0_only = {n for n in region if n in writes or n not in rest}
    return Regions(
        state=frozenset(state),
        batched=batched,
        raw=raw,
        data_dep=frozenset(data_dep),
        dep=frozenset(dep),
        order=tuple(n for n in g.names() if n in region),  # graph order: copies keep it
        region=frozenset(region),
        tower=frozenset(tower),
        update=frozenset(update),
        tower0_only=frozenset(tower0_only),
        drawn=tuple(n for n in sources if n not in batched and _draws_input(g, n)),
    )


def _draws_input(g, n: str) -> bool:
    """Whether stateful node `n` takes examples from an input pipeline: it reads a persistent
    resource (an iterator, a queue: a stateful op without inputs) or is one itself (Unstage)."""
    data = g.producers(n)[0]
    if not data:
        return not opdefs.makes_handles(g.node(n).op)
    return any(opdefs.is_stateful(g.node(p).op) and not g.producers(p)[0] for p in data)


def _reads_variable(ctx: RewriteContext, n: str) -> bool:
    variables = ctx.analysis.variables
    return any(not r.startswith("^") and names.node_of(r) in variables for r in ctx.graph.node(n).input)
