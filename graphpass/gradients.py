"""Where the gradient computation ends: the updates that consume gradients, and the raw gradient
tensors that must be reduced across towers before anything else reads them.

TensorFlow's autodiff leaves one trace in a finished GraphDef: it builds every backward op under
a gradient name scope, `S/<forward op>_grad/...` for `tf.gradients` (the aggregation `S/AddN`
included) and `S/gradient_tape/<forward op>/...` for `GradientTape`. Nodes under such a scope
form the backward pass. The raw gradients are the backward tensors that the rest of the graph
reads: the optimizer's updates directly, or through post-processing (clipping, scaling,
casting, the de-duplication of sparse gradients). Sparse gradients (IndexedSlices) cross that
boundary as a values tensor and an integer indices tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorflow.core.framework import types_pb2

from . import opdefs
from .errors import InvalidGraphError
from .ir import names
from .ir.graph import Graph

GRAD_MARK = "_grad/"
TAPE_SCOPE = "gradient_tape"
INDEX_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)


def gradient_scopes(graph: Graph) -> list[str]:
    """Name scopes under which TensorFlow built backward ops, sorted."""
    scopes: set[str] = set()
    for name in graph:
        i = name.find(GRAD_MARK)
        while i != -1:
            head = name[:i]
            j = head.find("/")
            while j != -1:
                if head[j + 1 :] in graph:
                    scopes.add(head[:j])
                    break
                j = head.find("/", j + 1)
            i = name.find(GRAD_MARK, i + 1)
        k = name.find(TAPE_SCOPE + "/")
        if k != -1 and (k == 0 or name[k - 1] == "/"):
            scopes.add(name[: k + len(TAPE_SCOPE)])
    return sorted(_outermost(scopes))


def _outermost(scopes: set[str]) -> set[str]:
    return {s for s in scopes if not any(s != o and s.startswith(o + "/") for o in scopes)}


def backward_nodes(graph: Graph, scopes: list[str]) -> set[str]:
    prefixes = tuple(s + "/" for s in scopes)
    if not prefixes:
        return set()
    return {n for n in graph if n.startswith(prefixes)}


def written_variables(graph: Graph, name: str, variables) -> list[str]:
    """The variables node `name` modifies (through its ref or resource inputs)."""
    node = graph.node(name)
    out = []
    for pos in opdefs.written_inputs(node.op):
        if pos < len(node.input):
            v = resolve_variable(graph, node.input[pos], variables)
            if v is not None and v not in out:
                out.append(v)
    return out


def resolve_variable(graph: Graph, ref: str, variables) -> str | None:
    """The variable a ref/resource input comes from, through Identity chains."""
    node = names.node_of(ref)
    for _ in range(64):
        if node in variables:
            return node
        n = graph.node(node)
        if n.op not in ("Identity", "RefIdentity") or not n.input:
            return None
        node = names.node_of(n.input[0])
    return None


@dataclass
class Update:
    """A node that writes a variable from gradients: an optimizer apply op, a scatter, an assign."""

    name: str
    op: str
    var: str
    state: list[str]
    sparse: bool
    grads: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)


@dataclass
class Gradient:
    """A raw gradient tensor: dense, or the values or indices of a sparse (IndexedSlices) one."""

    tensor: str
    kind: str
    variable: str
    updates: list[str] = field(default_factory=list)


def find_updates(graph: Graph, variables, backward: set[str]) -> list[Update]:
    """Writes to variables whose value comes from the backward pass, in graph order.

    Without a gradient scope (a hand-built graph) the optimizer apply ops are the updates.
    """
    from_backward = graph.descendants(backward, through_control=False) if backward else set()
    out = []
    for name in graph.names():
        node = graph.node(name)
        sig = opdefs.apply_signature(node.op)
        if backward and name not in from_backward:
            continue
        if not backward and sig is None:
            continue
        written = written_variables(graph, name, variables)
        if not written:
            continue
        if sig is not None:
            var = resolve_variable(graph, node.input[sig.var], variables)
            state = [resolve_variable(graph, node.input[i], variables) for i in sig.state]
            if var is None or None in state:
                raise InvalidGraphError(
                    f"apply op '{name}' ({node.op}) does not update a variable graphpass can find"
                )
            out.append(Update(name, node.op, var, state, sig.sparse))
        else:
            out.append(Update(name, node.op, written[0], written[1:], _has_index_input(graph, name)))
    return out


def _has_index_input(graph: Graph, name: str) -> bool:
    return "indices" in opdefs.input_arg_positions(graph.node(name))


def _gradient_inputs(graph: Graph, update: Update) -> list[str]:
    """The data inputs of an update that can carry gradients: all but its variables and slots."""
    node = graph.node(update.name)
    state = set(opdefs.written_inputs(node.op))
    sig = opdefs.apply_signature(node.op)
    if sig is not None:
        state |= {sig.var, *sig.state}
    return [r for pos, r in enumerate(node.input) if not r.startswith("^") and pos not in state]


def find_gradients(graph: Graph, updates: list[Update], backward: set[str]) -> list[Gradient]:
    """Every backward tensor read outside the backward pass on the way to an update.

    Each update's nearest backward tensors (breadth first from its gradient inputs) name the
    variable a gradient belongs to; tensors only reachable further away (the gradients a global
    norm mixes in, say) are attributed by those nearer updates. Integer tensors that travel with
    values are the indices of sparse gradients.
    """
    if not backward:
        grads = []
        for u in updates:
            for ref in _gradient_inputs(graph, u):
                t = _tensor(ref)
                u.grads.append(t)
                kind = "indices" if _dtype(graph, t) in INDEX_TYPES else "values" if u.sparse else "dense"
                grads.append(Gradient(t, kind, u.var, [u.name]))
        return _merge(grads)

    found: dict[str, Gradient] = {}
    for u in updates:
        for ref in _gradient_inputs(graph, u):
            nearest, post = _nearest_backward(graph, _tensor(ref), backward)
            u.post.extend(t for t in post if t not in u.post)
            u.grads.extend(t for t in nearest if t not in u.grads)
        for t in u.grads:
            g = found.setdefault(t, Gradient(t, "dense", u.var))
            if u.name not in g.updates:
                g.updates.append(u.name)

    region = _post_region(graph, [u.name for u in updates], backward)
    owner_of: dict[str, Update] = {}  # the first update each post-processing node serves
    for u in updates:
        for t in u.post:
            owner_of.setdefault(t, u)
        owner_of.setdefault(u.name, u)
    for name in graph.names():
        if name not in region:
            continue
        for ref in graph.node(name).input:
            if ref.startswith("^") or names.node_of(ref) not in backward:
                continue
            t = _tensor(ref)
            if t not in found:
                owner = owner_of.get(name, updates[0])
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


def _merge(grads: list[Gradient]) -> list[Gradient]:
    out: dict[str, Gradient] = {}
    for g in grads:
        if g.tensor in out:
            out[g.tensor].updates.extend(u for u in g.updates if u not in out[g.tensor].updates)
        else:
            out[g.tensor] = g
    return list(out.values())


def _tensor(ref: str) -> str:
    r = names.parse(ref)
    return names.tensor(r.node, r.index)


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
            nxt.extend(_tensor(r) for r in graph.node(producer).input if not r.startswith("^"))
        if found:
            return found, post
        layer = nxt
    return [], post
