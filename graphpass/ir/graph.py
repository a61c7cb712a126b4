"""Graph: a GraphDef's nodes by name, in order, with def-use maps (data, control and colocation uses)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from tensorflow.core.framework import graph_pb2, node_def_pb2

from ..errors import InternalError, InvalidGraphError
from . import names

NodeDef = node_def_pb2.NodeDef
GraphDef = graph_pb2.GraphDef

BACK_EDGE_OPS = frozenset({"NextIteration", "RefNextIteration"})


class Graph:
    """Nodes of one GraphDef, addressable by name, kept in a stable (insertion) order.

    The NodeDefs are the protobuf messages themselves: reading them is free, and the
    Rewriter is the only code that changes them, so the use maps below stay exact.
    """

    def __init__(self, graph_def: GraphDef, copy: bool = True):
        if copy:
            own = GraphDef()
            own.CopyFrom(graph_def)
            graph_def = own
        self._source = graph_def
        self._nodes: dict[str, NodeDef] = {}
        for node in graph_def.node:
            if not node.name:
                raise InvalidGraphError("the graph has a node with an empty name")
            if node.name in self._nodes:
                raise InvalidGraphError(f"the graph has two nodes named '{node.name}'")
            self._nodes[node.name] = node
        self.library = graph_def.library
        self.versions = graph_def.versions
        self._users: dict[str, dict[str, int]] | None = None
        self._coloc_users: dict[str, dict[str, int]] | None = None

    # -- reading -------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def node(self, name: str) -> NodeDef:
        try:
            return self._nodes[name]
        except KeyError:
            raise InternalError(f"no node named '{name}' in the graph") from None

    def get(self, name: str) -> NodeDef | None:
        return self._nodes.get(name)

    def nodes(self) -> Iterable[NodeDef]:
        return self._nodes.values()

    def names(self) -> list[str]:
        return list(self._nodes)

    def inputs(self, name: str) -> list[names.Ref]:
        return [names.parse(r) for r in self._nodes[name].input]

    def input_nodes(self, name: str) -> list[str]:
        """Producers of `name`'s data and control inputs, in input order (with repeats)."""
        return [names.node_of(r) for r in self._nodes[name].input]

    def users(self, name: str) -> list[str]:
        """Nodes that read `name` through a data or control input, in graph order."""
        users = self._use_map().get(name)
        return list(users) if users else []

    def data_users(self, name: str) -> list[tuple[str, int, int]]:
        """(consumer, input position, output index) for every data edge leaving `name`."""
        out = []
        for user in self.users(name):
            for pos, ref in enumerate(self._nodes[user].input):
                r = names.parse(ref)
                if not r.control and r.node == name:
                    out.append((user, pos, r.index))
        return out

    def colocation_users(self, name: str) -> list[str]:
        """Nodes whose `_class` attribute names `name`."""
        if self._coloc_users is None:
            self._build_use_maps()
        users = self._coloc_users.get(name)
        return list(users) if users else []

    def producer_op(self, ref: str) -> str:
        return self._nodes[names.node_of(ref)].op

    def _use_map(self) -> dict[str, dict[str, int]]:
        if self._users is None:
            self._build_use_maps()
        return self._users

    def _build_use_maps(self) -> None:
        users: dict[str, dict[str, int]] = {}
        coloc: dict[str, dict[str, int]] = {}
        for name, node in self._nodes.items():
            for ref in node.input:
                d = users.setdefault(names.node_of(ref), {})
                d[name] = d.get(name, 0) + 1
            if names.COLOCATION_ATTR in node.attr:
                for target in names.colocation_targets(node):
                    d = coloc.setdefault(target, {})
                    d[name] = d.get(name, 0) + 1
        self._users, self._coloc_users = users, coloc

    # -- index upkeep, called by the Rewriter only -----------------------------------------
    def _link(self, node: NodeDef) -> None:
        if self._users is None:
            return
        for ref in node.input:
            d = self._users.setdefault(names.node_of(ref), {})
            d[node.name] = d.get(node.name, 0) + 1
        if names.COLOCATION_ATTR in node.attr:
            for target in names.colocation_targets(node):
                d = self._coloc_users.setdefault(target, {})
                d[node.name] = d.get(node.name, 0) + 1

    def _unlink(self, node: NodeDef) -> None:
        if self._users is None:
            return
        for ref in node.input:
            _dec(self._users, names.node_of(ref), node.name)
        if names.COLOCATION_ATTR in node.attr:
            for target in names.colocation_targets(node):
                _dec(self._coloc_users, target, node.name)

    def _insert(self, node: NodeDef) -> None:
        if node.name in self._nodes:
            raise InternalError(f"a node named '{node.name}' already exists")
        self._nodes[node.name] = node
        self._link(node)

    def _delete(self, name: str) -> None:
        node = self._nodes.pop(name)
        self._unlink(node)

    # -- whole-graph views ----------------------------------------------------------------
    def topo_order(self, subset: Iterable[str] | None = None) -> list[str]:
        """Names in a deterministic topological order (loop back-edges ignored).

        With `subset`, only those nodes are ordered, by the edges among them.
        """
        order_index = {n: i for i, n in enumerate(self._nodes)}
        members = set(self._nodes) if subset is None else set(subset)
        indeg: dict[str, int] = {}
        succ: dict[str, list[str]] = {}
        for name in members:
            node = self._nodes[name]
            count = 0
            for ref in node.input:
                p = names.node_of(ref)
                if p not in members or self._nodes[p].op in BACK_EDGE_OPS:
                    continue
                count += 1
                succ.setdefault(p, []).append(name)
            indeg[name] = count
        heap = [(order_index[n], n) for n, d in indeg.items() if d == 0]
        heapq.heapify(heap)
        out: list[str] = []
        while heap:
            _, name = heapq.heappop(heap)
            out.append(name)
            for s in succ.get(name, ()):
                indeg[s] -= 1
                if indeg[s] == 0:
                    heapq.heappush(heap, (order_index[s], s))
        if len(out) != len(members):
            stuck = sorted(n for n, d in indeg.items() if d > 0)[:5]
            raise InvalidGraphError(f"the graph has a cycle through node(s) {', '.join(stuck)}")
        return out

    def ancestors(self, roots: Iterable[str], stop=None) -> set[str]:
        """Nodes reachable backwards from `roots` (included) over data and control edges.

        `stop(name)` true means: include the node but do not walk past it.
        """
        seen: set[str] = set()
        stack = [r for r in roots]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if stop is not None and stop(n):
                continue
            stack.extend(names.node_of(r) for r in self._nodes[n].input)
        return seen

    def descendants(self, roots: Iterable[str], through_control: bool = True) -> set[str]:
        """Nodes reachable forwards from `roots` (included)."""
        seen: set[str] = set()
        stack = list(roots)
        users = self._use_map()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            for u in users.get(n, ()):
                if u in seen:
                    continue
                if not through_control and not any(
                    not r.startswith("^") and names.node_of(r) == n for r in self._nodes[u].input
                ):
                    continue
                stack.append(u)
        return seen

    def to_graph_def(self) -> GraphDef:
        out = GraphDef()
        out.versions.CopyFrom(self.versions)
        if self.library.ByteSize():
            out.library.CopyFrom(self.library)
        out.node.extend(self._nodes.values())
        return out


def _dec(index: dict[str, dict[str, int]], key: str, user: str) -> None:
    d = index.get(key)
    if not d or user not in d:
        return
    d[user] -= 1
    if d[user] <= 0:
        del d[user]
        if not d:
            del index[key]
