"""Structural invariants checked between passes: inputs resolve, names unique, no cycles."""

from __future__ import annotations

from ..errors import InternalError
from . import names
from .graph import Graph


def check(graph: Graph) -> None:
    """Raise InternalError naming the first broken invariant."""
    for node in graph.nodes():
        seen_control = False
        for ref in node.input:
            producer = names.node_of(ref)
            if producer not in graph:
                raise InternalError(f"node '{node.name}' reads '{ref}', which does not exist")
            if ref.startswith("^"):
                seen_control = True
            elif seen_control:
                raise InternalError(f"node '{node.name}' has a data input after a control input")
        for target in names.colocation_targets(node):
            if target not in graph:
                raise InternalError(f"node '{node.name}' is colocated with missing node '{target}'")
    graph.topo_order()
