"""Dataflow checks on a scope read as the backward pass: what refutes it, and what autodiff made in it."""

from __future__ import annotations

from . import opdefs
from .functions import Library, called
from .gradient_dataflow import CARRYING_TYPES, OutputTypes
from .gradient_types import GRAD_MARK
from .ir.graph import Graph
from .variable_access import resolve_variable, writes

AGGREGATING_OPS = frozenset({"AddN", "AddV2", "Add", "Identity"})


def autodiff_core(
    graph: Graph, name: str, under: list[str], variables, library, types: OutputTypes
) -> set[str]:
    """The nodes under a scope that autodiff made, where the scope holds others too: its
    `X_grad/` groups (those whose forward op has been renamed since included); the seed and
    shapes they read (nodes under the scope that read no float from outside it); and the sums
    of gradients between groups (AddN of what they compute). None of them a variable or a write."""
    core = {n for n in under if GRAD_MARK in n[len(name) + 1 :]}
    scope = set(under)
    pool = scope - core
    plain = {n for n in pool if n not in variables and not writes(graph, n, variables, library)}

    def seedlike(n: str) -> bool:
        node = graph.node(n)
        return all(
            p in scope or types.tensor(node.input[i]) not in CARRYING_TYPES
            for i, p in enumerate(graph.producers(n)[0])
        )

    stack = list(core)
    while stack:
        for p in graph.producers(stack.pop())[0]:
            if p in plain and p not in core and seedlike(p):
                core.add(p)
                stack.append(p)
    changed = True
    while changed:
        changed = False
        for n in sorted(plain - core):
            data = graph.producers(n)[0]
            if graph.node(n).op in AGGREGATING_OPS and data and all(p in core for p in data):
                core.add(n)
                changed = True
    return core


def refuted(graph: Graph, under: list[str], variables, library: Library) -> str | None:
    """Why the nodes `under` a scope cannot be autodiff's, or None."""
    for n in under:
        if n in variables:
            return f"holds variable '{n}' (autodiff makes no variables)"
    for n in under:
        if any(v in variables for _, v in writes(graph, n, variables, library)):
            return f"holds '{n}', which writes a variable (autodiff writes none)"
    for n in under:
        v = _reads_variable(graph, n, variables, library)
        if v is not None:
            return f"holds '{n}', which reads variable '{v}' (autodiff reads forward values, not variables)"
    return None


def _reads_variable(graph: Graph, n: str, variables, library: Library) -> str | None:
    """The variable op `n` (not a call) reads at a resource input, if any."""
    node = graph.node(n)
    if library and called(node, library.names):
        return None
    for p in graph.producers(n)[0]:
        v = resolve_variable(graph, p, variables)
        if v is not None and opdefs.takes_state_from(node, p):
            return v
    return None
