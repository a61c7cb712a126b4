"""Float dataflow for the gradient analysis: node output types, what gradients reach, data ancestors."""

from __future__ import annotations

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import dtypes

from . import opdefs
from .ir import names
from .ir.graph import Graph

CARRYING_TYPES = frozenset(
    t
    for t in types_pb2.DataType.values()
    if t not in (types_pb2.DT_INVALID,)
    and t < 100
    and (dtypes.as_dtype(t).is_floating or dtypes.as_dtype(t).is_complex)
)


class OutputTypes:
    """Output types of nodes, read once."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._types: dict[str, list[int]] = {}

    def of(self, name: str) -> list[int]:
        t = self._types.get(name)
        if t is None:
            t = self._types[name] = opdefs.output_types(self.graph.node(name))
        return t

    def carries(self, name: str) -> bool:
        return any(t in CARRYING_TYPES for t in self.of(name))

    def tensor(self, ref: str) -> int:
        r = names.parse(ref)
        types = self.of(r.node)
        return types[r.index] if r.index < len(types) else types[-1]


def tensor_of(ref: str) -> str:
    r = names.parse(ref)
    return names.tensor(r.node, r.index)


def data_ancestors(graph: Graph, roots, stop=None) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if stop is not None and stop(n):
            continue
        stack.extend(graph.producers(n)[0])
    return seen


def carried_nodes(graph: Graph, sources, types: OutputTypes, within: set[str] | None = None) -> set[str]:
    """Nodes whose float outputs carry what `sources` compute: `sources` with float outputs and
    the nodes with float outputs they reach over float data edges (inside `within`, if given)."""
    out: set[str] = set()
    stack = [s for s in sources if types.carries(s)]
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        for user in graph.users(n):
            if user in out or (within is not None and user not in within) or not types.carries(user):
                continue
            node = graph.node(user)
            data = graph.producers(user)[0]
            if any(p == n and types.tensor(node.input[i]) in CARRYING_TYPES for i, p in enumerate(data)):
                stack.append(user)
    return out
