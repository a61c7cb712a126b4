"""Where the gradient computation ends: the raw gradient each optimizer update consumes.

TensorFlow's autodiff leaves one trace in a finished GraphDef: it builds every backward op under
a gradient name scope, `S/<forward op>_grad/...` for `tf.gradients` (the aggregation `S/AddN`
included) and `S/gradient_tape/<forward op>/...` for `GradientTape`. Nodes under such a scope
form the backward pass; anything between them and an apply op (clipping, scaling, casting) is
post-processing that must see gradients already reduced across towers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvalidGraphError
from .ir import names
from .ir.graph import Graph

GRAD_MARK = "_grad/"
TAPE_SCOPE = "gradient_tape"


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


@dataclass
class GradientCut:
    """The raw gradient of one apply op and the post-processing between it and the apply."""

    apply: str
    raw: str
    post: list[str] = field(default_factory=list)
    found_by: str = "scope"


def find_raw_gradients(
    graph: Graph, grad_inputs: dict[str, str], backward: set[str]
) -> dict[str, GradientCut]:
    """For each apply op (name -> its gradient input string), the raw gradient tensor.

    Walks back from the gradient input through non-backward nodes, breadth first; the nearest
    backward tensor is the raw gradient. When several are equally near (a node mixing two
    gradients), the one with a path used by no other apply op wins.

    Raises:
        InvalidGraphError: the gradient of an apply op cannot be told apart from others.
    """
    cuts: dict[str, GradientCut] = {}
    ambiguous: dict[str, list[str]] = {}
    for apply, grad in grad_inputs.items():
        if not backward or names.node_of(grad) in backward:
            cuts[apply] = GradientCut(apply, grad, [], "scope" if backward else "apply-input")
            continue
        found, post = _nearest_backward(graph, grad, backward)
        if not found:
            cuts[apply] = GradientCut(apply, grad, [], "apply-input")
        elif len(found) == 1:
            cuts[apply] = GradientCut(apply, found[0], post)
        else:
            ambiguous[apply] = found
            cuts[apply] = GradientCut(apply, "", post)
    if ambiguous:
        _resolve_by_ownership(graph, grad_inputs, cuts, ambiguous, backward)
    return cuts


def _nearest_backward(graph: Graph, grad: str, backward: set[str]) -> tuple[list[str], list[str]]:
    layer = [grad]
    seen_nodes: set[str] = set()
    post: list[str] = []
    while layer:
        found: list[str] = []
        next_layer: list[str] = []
        for ref in layer:
            producer = names.node_of(ref)
            if producer in backward:
                if ref not in found:
                    found.append(ref)
                continue
            if producer in seen_nodes:
                continue
            seen_nodes.add(producer)
            post.append(producer)
            for r in graph.node(producer).input:
                if not r.startswith("^"):
                    next_layer.append(names.tensor(*names.parse(r)[:2]))
        if found:
            return found, post
        layer = next_layer
    return [], post


def _resolve_by_ownership(graph, grad_inputs, cuts, ambiguous, backward) -> None:
    """Keep the candidate that reaches its apply through nodes feeding that apply alone."""
    owners: dict[str, set[str]] = {}
    for apply, grad in grad_inputs.items():
        for n in graph.ancestors([names.node_of(grad)], stop=lambda n: n in backward):
            if n not in backward:
                owners.setdefault(n, set()).add(apply)
    for apply, candidates in ambiguous.items():
        keep = []
        for cand in candidates:
            node = names.node_of(cand)
            for user in graph.users(node):
                if owners.get(user) == {apply}:
                    keep.append(cand)
                    break
        if len(keep) != 1:
            raise InvalidGraphError(
                f"cannot tell which gradient apply op '{apply}' consumes: its post-processing "
                f"mixes {', '.join(candidates)}"
            )
        cuts[apply].raw = keep[0]
