"""Reading the backward pass from gradient scope names at any prefix, kept where the dataflow agrees."""

from __future__ import annotations

import bisect

from .backward_refutation import autodiff_core, refuted
from .errors import InvalidGraphError
from .functions import Library
from .gradient_dataflow import CARRYING_TYPES, OutputTypes, data_ancestors
from .gradient_types import GRAD_MARK, TAPE_SCOPE, Backward
from .ir.graph import Graph
from .post_processing import post_processing_inside


def _readings(head: str, graph: Graph):
    """(scope S, forward op F) pairs that `head` = `S/X` can mean: F = P + X is a node for a
    prefix P of S (empty or ending at a scope boundary), and F does not lie under S."""
    slashes = [j for j, c in enumerate(head) if c == "/"]
    for a, j in enumerate(slashes):
        scope, x = head[:j], head[j + 1 :]
        for p in [""] + [head[: m + 1] for m in slashes[:a]]:
            f = p + x
            if f in graph and not f.startswith(scope + "/"):
                yield scope, f


class _Sorted:
    """Node names in sorted order, to list the nodes under a scope."""

    def __init__(self, graph: Graph):
        self.names = sorted(graph)

    def under(self, scope: str) -> list[str]:
        lo = bisect.bisect_left(self.names, scope + "/")
        hi = bisect.bisect_left(self.names, scope + "0")  # "0" follows "/"
        return self.names[lo:hi]


def find_backward(graph: Graph, variables, library: Library) -> Backward:
    """The backward pass of `graph` (see the module docstring)."""
    readings: dict[str, set[str]] = {}
    tapes: set[str] = set()
    heads: set[str] = set()
    for name in graph:
        i = name.find(GRAD_MARK)
        while i != -1:
            head = name[:i]
            if head not in heads:
                heads.add(head)
                for scope, f in _readings(head, graph):
                    readings.setdefault(scope, set()).add(f)
            i = name.find(GRAD_MARK, i + 1)
        k = name.find(TAPE_SCOPE + "/")
        if k != -1 and (k == 0 or name[k - 1] == "/"):
            tapes.add(name[: k + len(TAPE_SCOPE)])
    if not readings and not tapes:
        return Backward([], set())

    index = _Sorted(graph)
    types = OutputTypes(graph)
    notes: list[str] = []
    kinds = {s: "autodiff" for s in readings} | {s: "tape" for s in tapes if s not in readings}
    valid: set[str] = set()
    members: dict[str, set[str]] = {}
    for scope in sorted(kinds):
        under = index.under(scope)
        reason = refuted(graph, under, variables, library)
        if reason and kinds[scope] == "autodiff":
            # Other nodes under the scope (a user's scope named alike): keep what autodiff made
            core = autodiff_core(graph, scope, under, variables, library, types)
            if core and not refuted(graph, sorted(core), variables, library):
                notes.append(
                    f"'{scope}/' {reason.replace('holds', 'also holds')}: its {len(core)} nodes of "
                    f"autodiff's groups are read as the backward pass, its {len(under) - len(core)} others "
                    "as forward ops"
                )
                valid.add(scope)
                members[scope] = core
                continue
        if reason:
            notes.append(f"'{scope}/' is named like a gradient scope but {reason}: read as forward ops")
        else:
            valid.add(scope)
            members[scope] = set(under)
    # A scope holding forward ops that another scope differentiates is forward itself (a user's
    # scope named alike, or the first-order gradients of a graph that differentiates twice).
    forward = {f: s for s in sorted(valid) for f in readings.get(s, ())}
    for scope in sorted(valid):
        inside = next(
            (f for f, s in forward.items() if f.startswith(scope + "/") and not _nested(s, scope)), None
        )
        if inside is not None:
            notes.append(
                f"'{scope}/' is named like a gradient scope but holds '{inside}', a forward op that "
                f"'{forward[inside]}/' differentiates: read as forward ops"
            )
    valid = {
        s for s in valid if not any(f.startswith(s + "/") and not _nested(t, s) for f, t in forward.items())
    }
    scopes = sorted(s for s in valid if not any(s != o and s.startswith(o + "/") for o in valid))
    nodes = {n for s in scopes for n in members[s]}
    valued = _valued(graph, nodes, types)
    post = post_processing_inside(graph, nodes, valued, types, notes)
    if post:
        nodes -= post
        valued = _valued(graph, nodes, types)
    # Autodiff reads the forward pass; the forward pass never reads a gradient. (It may read
    # what autodiff made for it that carries none: while_v2's accumulators, empty tensor lists
    # the forward loop fills for the gradient loop.)
    fwd = [f for s in scopes for f in readings.get(s, ()) if f not in nodes]
    feeding = data_ancestors(graph, fwd, stop=nodes.__contains__) & nodes
    outside = lambda n: n not in nodes  # noqa: E731
    feeding = {
        n
        for n in feeding
        if any(a in nodes and types.carries(a) for a in data_ancestors(graph, [n], stop=outside))
    }
    if feeding:
        n = min(feeding)
        raise InvalidGraphError(
            f"node '{n}' lies in '{_scope_of(n, scopes)}/', read as the backward pass, but forward ops "
            "read it: graphpass cannot tell this graph's gradients apart (rename that scope)"
        )
    constant = {n for n in nodes if n not in valued and types.carries(n)}
    return Backward(scopes, nodes, {s: kinds[s] for s in scopes}, notes, constant, valued, types)


def _nested(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer + "/")


def _scope_of(node: str, scopes: list[str]) -> str:
    return next(s for s in scopes if node.startswith(s + "/"))


def _valued(graph: Graph, nodes: set[str], types: OutputTypes) -> set[str]:
    """The nodes of the backward pass whose float value depends on a forward value: they read a
    float from outside it, or such a node. Its seed (ones in the loss's shape), shapes and
    constants do not: a constant under a scope named like a gradient scope carries no gradient."""
    out: set[str] = set()
    order = [n for n in graph.names() if n in nodes]
    changed = True
    while changed:  # in graph order: once, and once more to see it settled (more around loops)
        changed = False
        for n in order:
            if n in out or not types.carries(n):
                continue
            node = graph.node(n)
            for i, p in enumerate(graph.producers(n)[0]):
                if (p in out or p not in nodes) and types.tensor(node.input[i]) in CARRYING_TYPES:
                    out.add(n)
                    changed = True
                    break
    return out
