"""The raw gradients: the backward tensors nearest to the updates, dense or sparse (values, indices)."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2

from . import opdefs
from .functions import Library
from .gradient_dataflow import CARRYING_TYPES, tensor_of
from .gradient_types import Backward, Gradient, Update
from .ir import names
from .ir.graph import Graph
from .variable_access import written_positions

INDEX_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)


def _gradient_inputs(graph: Graph, update: Update, library: Library) -> list[tuple[int, str]]:
    """(position, input) of the data inputs of an update that can carry gradients: all but the
    variables it writes (and an apply op's slots); of a call, only float inputs (its predicate
    or branch index carries none)."""
    node = graph.node(update.name)
    state = set(written_positions(node, library))
    sig = opdefs.apply_signature(node.op)
    if sig is not None:
        state |= {sig.var, *sig.state}
    call = sig is None and not opdefs.written_inputs(node.op)
    out = []
    for pos, r in enumerate(node.input):
        if r.startswith("^") or pos in state:
            continue
        if call and _dtype(graph, tensor_of(r)) not in CARRYING_TYPES:
            continue
        out.append((pos, r))
    return out


def find_gradients(
    graph: Graph, updates: list[Update], backward: Backward, library: Library
) -> list[Gradient]:
    """Every backward tensor read outside the backward pass on the way to an update.

    Each update's nearest backward tensors (breadth first from its gradient inputs) name the
    variable a gradient belongs to; tensors only reachable further away (the gradients a global
    norm mixes in, say) are attributed by those nearer updates. Integer tensors that travel with
    values are the indices of sparse gradients.
    """
    nodes = backward.nodes
    if not nodes:
        grads = []
        for u in updates:
            for _, ref in _gradient_inputs(graph, u, library):
                t = tensor_of(ref)
                u.grads.append(t)
                kind = "indices" if _dtype(graph, t) in INDEX_TYPES else "values" if u.sparse else "dense"
                grads.append(Gradient(t, kind, u.var, [u.name]))
        return _merge(grads)

    found: dict[str, Gradient] = {}
    walked: dict[str, tuple[list[str], list[str]]] = {}  # tensor -> its walk (updates share inputs)
    for u in updates:
        has_post, has_grads = set(u.post), set(u.grads)
        for pos, ref in _gradient_inputs(graph, u, library):
            t = tensor_of(ref)
            walk = walked.get(t)
            if walk is None:
                walk = walked[t] = _nearest_backward(graph, t, nodes)
            nearest, post = walk
            _extend_new(u.post, has_post, post)
            _extend_new(u.grads, has_grads, nearest)
            if pos in u.targets:
                for t in nearest:
                    u.grad_targets.setdefault(t, u.targets[pos])
        for t in u.grads:
            g = found.setdefault(t, Gradient(t, "dense", u.grad_targets.get(t, u.var)))
            if u.name not in g.updates:
                g.updates.append(u.name)

    first = next((u for u in updates if u.grads), None)
    if first is None:
        return []
    region = _post_region(graph, [u.name for u in updates], nodes)
    owner_of: dict[str, Update] = {}  # the first update each post-processing node serves
    for u in updates:
        for t in u.post:
            owner_of.setdefault(t, u)
        owner_of.setdefault(u.name, u)
    for name in graph.names():
        if name not in region:
            continue
        for ref in graph.node(name).input:
            p = names.node_of(ref)
            if ref.startswith("^") or p not in nodes or p in backward.constant:
                continue
            t = tensor_of(ref)
            if t not in found:
                owner = owner_of.get(name, first)
                found[t] = Gradient(t, "dense", owner.var, [owner.name])

    # Integer tensors are indices; float tensors that reach an update with an indices input are
    # the values of sparse gradients (they are gathered, not summed).
    sparse_reach = {t for u in updates if u.sparse for t in u.grads}
    for g in found.values():
        if _dtype(graph, g.tensor) in INDEX_TYPES:
            g.kind = "indices"
        elif g.tensor in sparse_reach:
            g.kind = "values"
    return list(found.values())


def _extend_new(out: list[str], has: set[str], items: list[str]) -> None:
    """Append to `out` the `items` not in it yet (`has`: the set of `out`, kept up to date)."""
    for t in items:
        if t not in has:
            has.add(t)
            out.append(t)


def _merge(grads: list[Gradient]) -> list[Gradient]:
    out: dict[str, Gradient] = {}
    for g in grads:
        if g.tensor in out:
            out[g.tensor].updates.extend(u for u in g.updates if u not in out[g.tensor].updates)
        else:
            out[g.tensor] = g
    return list(out.values())


def _dtype(graph: Graph, tensor: str) -> int:
    r = names.parse(tensor)
    return opdefs.output_dtype(graph.node(r.node), r.index)


def _post_region(graph: Graph, updates: list[str], backward: set[str]) -> set[str]:
    """Non-backward nodes between the backward pass and the updates (the updates included)."""
    anc = graph.ancestors(updates, stop=lambda n: n in backward)
    return {n for n in anc if n not in backward}


def _nearest_backward(graph: Graph, grad: str, backward: set[str]) -> tuple[list[str], list[str]]:
    """Backward tensors nearest to `grad` (breadth first through other nodes), and the nodes walked."""
    layer = [grad]
    seen: set[str] = set()
    post: list[str] = []
    while layer:
        found: list[str] = []
        nxt: list[str] = []
        for ref in layer:
            producer = names.node_of(ref)
            if producer in backward:
                if ref not in found:
                    found.append(ref)
                continue
            if producer in seen:
                continue
            seen.add(producer)
            post.append(producer)
            data = graph.producers(producer)[0]  # data inputs come first: controls are not walked
            nxt.extend(map(tensor_of, graph.node(producer).input[: len(data)]))
        if found:
            return found, post
        layer = nxt
    return [], post
