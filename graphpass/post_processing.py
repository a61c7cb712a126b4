"""Telling post-processing from the backward pass: renamed into it, swallowed by it, named like it."""

from __future__ import annotations

from .errors import InvalidGraphError
from .gradient_dataflow import CARRYING_TYPES, OutputTypes, carried_nodes, data_ancestors, tensor_of
from .gradient_types import GRAD_MARK, TAPE_SCOPE, Backward, Gradient
from .ir import names
from .ir.graph import Graph

# Ops that compute on a gradient in ways the reduction does not commute with (norms, finiteness
# checks, clipping by value). Autodiff applies them to forward values only, never to gradients.
NONLINEAR_OPS = frozenset(
    {"L2Loss", "Square", "Sqrt", "EuclideanNorm", "IsFinite", "IsNan", "IsInf", "ClipByValue"}
)
MULTIPLY_OPS = frozenset({"Mul", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"})


def post_processing_inside(
    graph: Graph, nodes: set[str], valued: set[str], types: OutputTypes, notes: list[str]
) -> set[str]:
    """Nodes read as the backward pass that compute on what was computed from its gradients
    outside it (clipping by a global norm taken outside, renamed into the gradient scope):
    autodiff only reads forward values and its own, so they are post-processing."""
    outside: set[str] = set()  # computed from gradients, outside the backward pass
    stack = list(valued)
    while stack:
        for user in graph.users(stack.pop()):
            if user not in nodes and user not in outside and types.carries(user):
                outside.add(user)
                stack.append(user)
    post: set[str] = set()
    stack = sorted(n for n in nodes if any(p in outside for p in graph.producers(n)[0])) if outside else []
    while stack:
        n = stack.pop()
        if n in post:
            continue
        post.add(n)
        stack.extend(u for u in graph.users(n) if u in nodes and n in graph.producers(u)[0])
    if post:
        entry = min(n for n in post if any(p in outside for p in graph.producers(n)[0]))
        via = min(p for p in graph.producers(entry)[0] if p in outside)
        notes.append(
            f"'{entry}' and {len(post) - 1} more nodes named like the backward pass read '{via}', computed "
            "from its gradients outside it: read as post-processing"
        )
    return post


def refuse_unread_autodiff(graph: Graph, updates: list[str], backward: set[str]) -> None:
    """Refuse a graph where nodes named like autodiff's (`X_grad/`, `gradient_tape/`) feed the
    updates but were not read as the backward pass (their names no longer match the forward ops,
    or a scope is read as a gradient scope they are not under): graphpass could not tell where
    the gradients end, and a reduction after post-processing would train a different model."""
    upstream = graph.ancestors(updates)
    named = sorted(
        n
        for n in upstream
        if n not in backward and (GRAD_MARK in n or n.startswith(TAPE_SCOPE + "/") or f"/{TAPE_SCOPE}/" in n)
    )
    if named:
        raise InvalidGraphError(
            f"node '{named[0]}' is named like TensorFlow's gradient ops but is not in the backward pass "
            "graphpass can read from the names (its forward op renamed, or a scope named like a gradient "
            "scope): it cannot tell where the gradients end (keep tf.gradients' names, or rename the "
            "whole graph under one prefix)"
        )


def check_cut(graph: Graph, backward: Backward, grads: list[Gradient]) -> None:
    """Refuse a reading whose raw gradients come after post-processing.

    Autodiff is linear in the gradients it propagates: it computes norms, finiteness checks and
    squares on forward values only. One of those applied to a gradient between where gradients
    enter the backward pass (its seed and constants: nodes that read no float tensor from
    outside it) and a raw gradient means the pass read as backward swallowed post-processing
    (a global norm, say), and reducing there would not give the single tower's step.
    """
    nodes = backward.nodes
    if not nodes or not grads:
        return
    types = backward.types or OutputTypes(graph)
    cut = {names.node_of(g.tensor) for g in grads}
    inside = lambda n: n in nodes  # noqa: E731
    before = data_ancestors(graph, cut, stop=lambda n: not inside(n)) & nodes
    seeds = set()
    for n in before:
        if not types.carries(n):
            continue
        node = graph.node(n)
        data = graph.producers(n)[0]
        if not any(
            p not in nodes and types.tensor(node.input[i]) in CARRYING_TYPES for i, p in enumerate(data)
        ):
            seeds.add(n)
    carried = carried_nodes(graph, seeds, types, within=before)
    for n in sorted(carried):
        node = graph.node(n)
        data = graph.producers(n)[0]
        inputs = [tensor_of(node.input[i]) for i, p in enumerate(data) if p in carried]
        if (node.op in NONLINEAR_OPS and inputs) or (
            node.op in MULTIPLY_OPS and len(inputs) == 2 and inputs[0] == inputs[1]
        ):
            g = next(
                g
                for g in grads
                if n in data_ancestors(graph, [names.node_of(g.tensor)], stop=lambda m: not inside(m))
            )
            raise InvalidGraphError(
                f"node '{n}' ({node.op}) computes on gradients before '{g.tensor}', read as the raw "
                f"gradient of '{g.variable}': reducing there would come after post-processing, so "
                "graphpass cannot tell this graph's gradients apart"
            )
