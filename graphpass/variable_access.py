"""Which variables a node reads or writes: through identities, v1 control flow and called functions."""

from __future__ import annotations

from . import opdefs
from .functions import Library
from .ir import names
from .ir.graph import Graph

# Ops that hand on their first input's ref or resource: identities, and v1 control flow's
# conditional and loop-entry forwarding (a variable written inside tf.cond or a while loop).
HANDLE_THROUGH = frozenset({"Identity", "RefIdentity", "Switch", "RefSwitch", "Enter", "RefEnter"})


def resolve_variable(graph: Graph, ref: str, variables) -> str | None:
    """The variable a ref/resource input comes from, through identities and v1 control flow."""
    node = names.node_of(ref)
    for _ in range(64):
        if node in variables:
            return node
        n = graph.node(node)
        if n.op not in HANDLE_THROUGH or not n.input:
            return None
        node = names.node_of(n.input[0])
    return None


def readers(graph: Graph, var: str) -> list[str]:
    """The nodes that take variable `var` (its ref or handle) as a data input, through the
    identities and v1 control flow that hand it on, sorted: its reads and writes."""
    found: set[str] = set()
    seen = {var}
    stack = [var]
    while stack:
        n = stack.pop()
        for user in graph.users(n):
            if user in seen or n not in graph.producers(user)[0]:
                continue
            seen.add(user)
            node = graph.node(user)
            if node.op in HANDLE_THROUGH and names.node_of(node.input[0]) == n:
                stack.append(user)
            else:
                found.add(user)
    return sorted(found)


def written_positions(node, library: Library) -> tuple[int, ...]:
    """Input positions whose variable `node` writes, itself or in the functions it calls."""
    own = opdefs.written_inputs(node.op)
    if own or not library:
        return own
    return library.written_inputs(node)


def writes(graph: Graph, name: str, variables, library: Library) -> list[tuple[int, str]]:
    """(input position, variable) for each variable node `name` writes."""
    node = graph.node(name)
    out = []
    for pos in written_positions(node, library):
        if pos < len(node.input):
            v = resolve_variable(graph, node.input[pos], variables)
            if v is not None and all(v != w for _, w in out):
                out.append((pos, v))
    return out


def written_variables(graph: Graph, name: str, variables, library: Library) -> list[str]:
    """The variables node `name` modifies (through its ref or resource inputs)."""
    return [v for _, v in writes(graph, name, variables, library)]
