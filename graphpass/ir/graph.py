"""Graph: a GraphDef's nodes by name, in order, with def-use maps (data, control and colocation uses)."""

from __future__ import annotations

from collections import deque
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
    Rewriter is the only code that changes them. Each node's inputs are parsed once into
    producer names (data and control separately) and cached until the Rewriter changes them;
    the use maps are built from that cache, kept exact by the Rewriter, or dropped and rebuilt
    after a bulk insertion.
    """

    def __init__(self, graph_def: GraphDef, copy: bool = True):
        if copy:
            own = GraphDef()
            own.CopyFrom(graph_def)
            graph_def = own
        self._source = graph_def
        self._nodes: dict[str, NodeDef] = {}
        for node in graph_def.node:
            name = node.name
            if not name:
                raise InvalidGraphError("the graph has a node with an empty name")
            if name in self._nodes:
                raise InvalidGraphError(f"the graph has two nodes named '{name}'")
            self._nodes[name] = node
        self.library = graph_def.library
        self.versions = graph_def.versions
        self._parsed: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._users: dict[str, dict[str, int]] | None = None
        self._coloc_users: dict[str, dict[str, int]] | None = None
        self._extra: list[GraphDef] = []  # containers of nodes added in bulk (kept alive here)
        # Nodes whose inputs are right by construction (renamed copies of a tower the verifier
        # checks); any change to a node's inputs takes it off this list.
        self._trusted: set[str] = set()

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

    def _producers(self, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(data producers, control producers) of node `name`, parsed once."""
        cached = self._parsed.get(name)
        if cached is None:
            data, ctrl = [], []
            for ref in self._nodes[name].input:
                if ref[:1] == "^":
                    ctrl.append(ref[1:])
                else:
                    data.append(names.node_of(ref))
            cached = (tuple(data), tuple(ctrl))
            self._parsed[name] = cached
        return cached

    def input_nodes(self, name: str) -> list[str]:
        """Producers of `name`'s data and control inputs, in input order (with repeats)."""
        data, ctrl = self._producers(name)
        return list(data + ctrl)

    def data_inputs(self, name: str) -> tuple[str, ...]:
        return self._producers(name)[0]

    def users(self, name: str) -> list[str]:
        """Nodes that read `name` through a data or control input, in graph order."""
        users = self._use_map().get(name)
        return list(users) if users else []

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
            data, ctrl = self._producers(name)
            for p in data + ctrl:
                d = users.get(p)
                if d is None:
                    users[p] = {name: 1}
                else:
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
        data, ctrl = self._producers(node.name)
        for p in data + ctrl:
            d = self._users.setdefault(p, {})
            d[node.name] = d.get(node.name, 0) + 1
        if names.COLOCATION_ATTR in node.attr:
            for target in names.colocation_targets(node):
                d = self._coloc_users.setdefault(target, {})
                d[node.name] = d.get(node.name, 0) + 1

    def _unlink(self, node: NodeDef) -> None:
        if self._users is not None:
            data, ctrl = self._producers(node.name)
            for p in data + ctrl:
                _dec(self._users, p, node.name)
            if names.COLOCATION_ATTR in node.attr:
                for target in names.colocation_targets(node):
                    _dec(self._coloc_users, target, node.name)
        self._parsed.pop(node.name, None)
        self._trusted.discard(node.name)

    def _insert(self, node: NodeDef) -> None:
        if node.name in self._nodes:
            raise InternalError(f"a node named '{node.name}' already exists")
        self._nodes[node.name] = node
        self._link(node)

    def _insert_many(
        self,
        nodes: Iterable[NodeDef],
        container: GraphDef | None = None,
        trusted: bool = False,
        link: bool = True,
    ) -> None:
        """Add many nodes at once. `link`: keep the use maps up to date (else they are rebuilt
        when next needed: cheaper for a graph's worth of nodes). `trusted`: their inputs are
        right by construction and the verifier may skip them."""
        table = self._nodes
        added = []
        for node in nodes:
            name = node.name
            if name in table:
                raise InternalError(f"a node named '{name}' already exists")
            table[name] = node
            added.append(name)
            if link:
                self._link(node)
        if not link:
            self._users = self._coloc_users = None
        if container is not None:
            self._extra.append(container)
        if trusted:
            self._trusted.update(added)

    def _delete(self, name: str) -> None:
        node = self._nodes.pop(name)
        self._unlink(node)

    # -- whole-graph views ----------------------------------------------------------------
    def check_acyclic(self) -> None:
        """Raise InvalidGraphError if the graph has a cycle other than loop back-edges (linear)."""
        nodes = self._nodes
        indeg = dict.fromkeys(nodes, 0)
        succ: dict[str, list[str]] = {}
        for name in nodes:
            data, ctrl = self._producers(name)
            for p in data + ctrl:
                if nodes[p].op in BACK_EDGE_OPS:
                    continue
                indeg[name] += 1
                succ.setdefault(p, []).append(name)
        stuck = on_cycles(indeg, succ)
        if stuck:
            raise InvalidGraphError(f"the graph has a cycle through node(s) {', '.join(stuck[:5])}")

    def ancestors(self, roots: Iterable[str], stop=None) -> set[str]:
        """Nodes reachable backwards from `roots` (included) over data and control edges.

        `stop(name)` true means: include the node but do not walk past it.
        """
        seen: set[str] = set()
        stack = list(roots)
        producers = self._producers
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if stop is not None and stop(n):
                continue
            data, ctrl = producers(n)
            stack.extend(data)
            stack.extend(ctrl)
        return seen

    def descendants(self, roots: Iterable[str], through_control: bool = True) -> set[str]:
        """Nodes reachable forwards from `roots` (included)."""
        seen: set[str] = set()
        stack = list(roots)
        users = self._use_map()
        producers = self._producers
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            for u in users.get(n, ()):
                if u not in seen and (through_control or n in producers(u)[0]):
                    stack.append(u)
        return seen

    def to_graph_def(self, consume: bool = False) -> GraphDef:
        """The graph as a GraphDef. With `consume`, this Graph gives its nodes up as they are
        copied (and is empty after): the copy then reuses their memory instead of doubling it."""
        out = GraphDef()
        out.versions.CopyFrom(self.versions)
        if self.library.ByteSize():
            out.library.CopyFrom(self.library)
        if not consume:
            out.node.extend(self._nodes.values())
            return out
        names = list(self._nodes)
        self._users = self._coloc_users = None
        self._parsed.clear()
        step = 4096
        for start in range(0, len(names), step):
            batch = names[start : start + step]
            out.node.extend(self._nodes[n] for n in batch)
            for n in batch:
                del self._nodes[n]
            self._release_containers()
        self._extra.clear()
        self._source = None
        return out

    def _release_containers(self) -> None:
        """Drop bulk containers none of whose nodes is still in the graph."""
        kept = []
        for container in self._extra:
            if container.node and container.node[len(container.node) - 1].name in self._nodes:
                kept.append(container)
        self._extra = kept


def on_cycles(indegree: dict[str, int], successors: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm: the nodes left with inputs after peeling off every node whose inputs are
    done (those on or behind a cycle), sorted. `indegree` is consumed."""
    ready = deque(n for n, d in indegree.items() if d == 0)
    while ready:
        n = ready.popleft()
        for s in successors.get(n, ()):
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    return sorted(n for n, d in indegree.items() if d > 0)


def _dec(index: dict[str, dict[str, int]], key: str, user: str) -> None:
    d = index.get(key)
    if not d or user not in d:
        return
    d[user] -= 1
    if d[user] <= 0:
        del d[user]
        if not d:
            del index[key]
