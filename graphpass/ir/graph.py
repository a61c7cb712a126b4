"""Graph: a GraphDef's nodes by name, in order, with a def-use index, and its towers (nodes recorded
as a tower's, and copies of a template tower kept as bytes: see towers.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

from tensorflow.core.framework import graph_pb2, node_def_pb2

from ..errors import InternalError, InvalidGraphError
from . import emit, names, walks
from .edits import Edits
from .towers import Copy
from .uses import Uses
from .walks import BACK_EDGE_OPS, find_cycle, without

NodeDef = node_def_pb2.NodeDef
GraphDef = graph_pb2.GraphDef
__all__ = ["BACK_EDGE_OPS", "Graph", "GraphDef", "NodeDef"]


class Graph(Edits):
    """Nodes of one GraphDef, addressable by name, in a stable order: the parsed nodes (in
    insertion order), then each tower copy's (in its template's order).

    Parsed nodes are the protobuf messages themselves: reading them is free, and the Rewriter is
    the only code that changes them. Each node's inputs are parsed once into producer names
    (data and control apart; equal control lists share one tuple) and cached until the Rewriter
    changes them. A copy's nodes answer every query too (membership, iteration, `node`, `get`,
    producers, users), from their template's snapshot; `node` gives a copy of theirs, and a
    change through the Rewriter makes one a NodeDef of its own, in place.

    Towers are recorded, not read from names: `tower_of` says which tower (and which of its
    nodes) a node is, for the nodes the rewrite made per tower and for the copies.
    """

    def __init__(self, graph_def: GraphDef, copy: bool = True):
        if copy:
            own = GraphDef()
            own.CopyFrom(graph_def)
            graph_def = own
        self._hold(graph_def)
        for node in graph_def.node:
            name = node.name
            if not name:
                raise InvalidGraphError("the graph has a node with an empty name")
            if name in self._nodes:
                raise InvalidGraphError(f"the graph has two nodes named '{name}'")
            self._nodes[name] = node

    def _hold(self, graph_def: GraphDef) -> None:
        """Start over from `graph_def`'s library and versions, with no nodes and empty caches."""
        self._source = graph_def
        self._nodes: dict[str, NodeDef] = {}
        self.library = graph_def.library
        self.versions = graph_def.versions
        self._parsed: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._colocated: dict[str, tuple[str, ...]] = {}  # parsed `_class` targets
        # Equal control-input tuples are one object: big graphs repeat a few (ResNet-50's 83k
        # control inputs are 464 distinct tuples), and walks expand each one once.
        self._control_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._ref_node = names.Memo(names.node_of)  # input string -> the node it reads
        self._reads: dict[str, tuple[tuple[str, int], ...]] = {}  # per node, as _output_reads says
        self._uses: Uses | None = None  # built when first asked, then kept exact or dropped
        self._made = GraphDef()  # holds the nodes new_node makes
        self._copies: dict[str, Copy] = {}  # by prefix
        self._copy_of: dict[int, Copy] = {}  # by tower index
        self._tower: dict[str, tuple[int, str]] = {}  # parsed per-tower node -> (tower, base)
        self._tower_names: dict[tuple[int, str], str] = {}
        self._changed: set[str] = set()  # parsed nodes changed since a template snapshot of them

    # -- reading -------------------------------------------------------------------------
    def source_bytes(self) -> bytes:
        """The GraphDef this graph was made from (or last started over from), serialized."""
        return self._source.SerializeToString()

    def _virtual(self, name: str) -> tuple[Copy, int] | None:
        """(copy, slot) of a copy's node `name`, or None."""
        if not self._copies:
            return None
        slash = name.find("/")
        c = self._copies.get(name[: slash + 1]) if slash > 0 else None
        if c is None:
            return None
        k = c.slot(name)
        return None if k is None else (c, k)

    def __contains__(self, name: str) -> bool:
        return name in self._nodes or self._virtual(name) is not None

    def __len__(self) -> int:
        return len(self._nodes) + sum(len(c) for c in self._copies.values())

    def __iter__(self) -> Iterator[str]:
        if not self._copies:
            return iter(self._nodes)
        return chain(self._nodes, (c.name(k) for c in self._copies.values() for k in c.live()))

    def node(self, name: str) -> NodeDef:
        """Node `name`; for a copy's node not changed yet, a NodeDef equal to it (changing that
        changes nothing: the Rewriter is the way)."""
        node = self.get(name)
        if node is None:
            raise InternalError(f"no node named '{name}' in the graph")
        return node

    def get(self, name: str) -> NodeDef | None:
        node = self._nodes.get(name)
        if node is not None or not self._copies:
            return node
        hit = self._virtual(name)
        return None if hit is None else hit[0].materialize(hit[1])

    def nodes(self) -> Iterable[NodeDef]:
        """Every node (a copy's nodes as in `node`)."""
        if not self._copies:
            return self._nodes.values()
        return chain(
            self._nodes.values(), (c.materialize(k) for c in self._copies.values() for k in c.live())
        )

    def parsed_nodes(self) -> Iterable[NodeDef]:
        """The nodes that are NodeDefs of their own: all but the copies' unchanged nodes."""
        return chain(self._nodes.values(), (n for c in self._copies.values() for n in c.detached.values()))

    def parsed_names(self):
        """The names of the graph's own nodes, as a read-only view: every node but the tower
        copies' (changed ones included)."""
        return self._nodes.keys()

    def colocated_copy_nodes(self) -> list[str]:
        """The copies' unchanged nodes that have colocation targets."""
        out = []
        for c in self._copies.values():
            coloc = c.template.colocation
            out += [c.name(k) for k in c.live() if k not in c.detached and coloc[c.positions[k]]]
        return out

    def names(self) -> list[str]:
        return list(self)

    @property
    def copies(self) -> list[Copy]:
        return list(self._copies.values())

    def tower_of(self, name: str) -> tuple[int, str] | None:
        """(tower index, base name) of a node the rewrite made for one tower, else None."""
        found = self._tower.get(name)
        if found is not None or not self._copies:
            return found
        hit = self._virtual(name)
        return None if hit is None else (hit[0].index, name[len(hit[0].prefix) :])

    def tower_node(self, index: int, base: str) -> str | None:
        """The name of tower `index`'s node `base`, if there is one."""
        name = self._tower_names.get((index, base))
        if name is not None:
            return name
        c = self._copy_of.get(index)
        return c.prefix + base if c is not None and c.slot(c.prefix + base) is not None else None

    def producers(self, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(data producers, control producers) of node `name`, parsed once; nodes with equal
        control inputs share one control tuple (the same object)."""
        cached = self._parsed.get(name)
        if cached is not None:
            return cached
        node = self._nodes.get(name)
        if node is None:
            hit = self._virtual(name)
            if hit is None:
                raise KeyError(name)
            c, k = hit
            if k not in c.detached:
                return c.producers(k, self._shared)
            node = c.detached[k]
        refs = list(node.input)
        k = 0
        for ref in refs:  # the data inputs
            if ref[:1] == "^":
                break
            k += 1
        if not names.all_control(refs[k:]):
            raise InternalError(f"node '{name}' has a data input after a control input")
        return self._record(name, refs, k)

    def control_producers(self, refs: Sequence[str]) -> tuple[str, ...]:
        """The producers of control inputs `refs`, as the graph's shared tuple."""
        return self._shared(tuple(map(self._ref_node.__getitem__, refs)))

    def _record(
        self, name: str, refs: Sequence[str], k: int, ctrl: tuple[str, ...] | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Cache the parse of node `name`'s inputs `refs`, whose first `k` are data inputs
        (`ctrl`: the producers of the others, from control_producers, if known)."""
        data_refs = refs[:k]
        if ctrl is None:
            ctrl = self.control_producers(refs[k:]) if k < len(refs) else ()
        indexed = [r for r in data_refs if ":" in r] if k else ()
        reads = tuple(filter(None, map(_output_read, indexed))) if indexed else ()
        return self._store_parse(name, tuple(map(self._ref_node.__getitem__, data_refs)), ctrl, reads)

    def _store_parse(
        self, name: str, data: tuple[str, ...], ctrl: tuple[str, ...], reads: tuple[tuple[str, int], ...]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        parsed = self._parsed[name] = (data, ctrl)
        self._reads[name] = reads
        return parsed

    def output_reads(self, name: str) -> tuple[tuple[str, int], ...]:
        """(producer, index) of each data input of `name` that reads an output other than 0."""
        reads = self._reads.get(name)
        if reads is None:
            hit = self._virtual(name)
            if hit is not None and hit[1] not in hit[0].detached:
                c, k = hit
                node = c.materialize(k)
                return tuple(
                    filter(None, map(_output_read, (r for r in node.input if ":" in r and r[:1] != "^")))
                )
            self.producers(name)
            reads = self._reads[name]
        return reads

    def _shared(self, ctrl: tuple[str, ...]) -> tuple[str, ...]:
        """The one tuple object equal to control producers `ctrl`."""
        return self._control_sets.setdefault(ctrl, ctrl) if ctrl else ()

    def new_node(self, **fields) -> NodeDef:
        """An empty NodeDef (or one with `fields`) for the caller to fill and insert. All live in
        one message of the graph's: one protobuf arena makes them at half the cost of separate
        messages, and frees them at once."""
        return self._made.node.add(**fields)

    def colocation(self, name: str) -> tuple[str, ...]:
        """The nodes `name` is colocated with (its `_class` attribute), parsed once."""
        cached = self._colocated.get(name)
        if cached is None:
            node = self._nodes.get(name)
            if node is None:
                hit = self._virtual(name)
                if hit is None:
                    raise KeyError(name)
                c, k = hit
                if k not in c.detached:
                    return c.colocation(k)
                node = c.detached[k]
            found = names.colocation_targets(node) if names.COLOCATION_ATTR in node.attr else ()
            cached = self._colocated[name] = tuple(found)
        return cached

    def input_nodes(self, name: str) -> list[str]:
        """Producers of `name`'s data and control inputs, in input order (with repeats)."""
        data, ctrl = self.producers(name)
        return list(data + ctrl)

    def data_inputs(self, name: str) -> tuple[str, ...]:
        return self.producers(name)[0]

    def users(self, name: str) -> list[str]:
        """Nodes that read `name` through a data or control input: the parsed ones in graph order
        (or, for nodes whose inputs changed since the index was built, in the order they
        changed), then the copies' nodes, copy by copy."""
        found = self._index().users(name)
        if self._copies:
            found += self._copy_readers(name, colocated=False)
        return found

    def colocation_users(self, name: str) -> list[str]:
        """Nodes whose `_class` attribute names `name`."""
        users = self._index().coloc.get(name)
        found = list(users) if users else []
        if self._copies:
            found += self._copy_readers(name, colocated=True)
        return found

    def _copy_readers(self, name: str, colocated: bool) -> list[str]:
        """The copies' unchanged nodes that read (or are colocated with) `name`. A copy's node
        reads what its template member reads, renamed: a member of the copy for a member, its own
        tower's counterpart for a node of the template's tower, anything else as it is."""
        out = []
        rec = self._tower.get(name)
        own = self._virtual(name)
        for c in self._copies.values():
            t = c.template
            sources = []
            if own is not None and own[0] is c:
                sources.append(t.prefix + name[len(c.prefix) :])
            else:
                if rec is None or rec[0] != t.index:
                    sources.append(name)
                if rec is not None and rec[0] == c.index != t.index:
                    counterpart = self._tower_names.get((t.index, rec[1]))
                    if counterpart is not None:
                        sources.append(counterpart)
            index = t.coloc_readers if colocated else t.readers
            for source in sources:
                for j in index.get(source, ()):
                    k = c.slot_of.get(t.bases[j])
                    if k is not None and k not in c.removed and k not in c.detached:
                        out.append(c.prefix + t.bases[j])
        return out

    def producer_op(self, ref: str) -> str:
        return self.node(names.node_of(ref)).op

    def _index(self) -> Uses:
        if self._uses is None:
            uses = Uses()
            for name in chain(self._nodes, self._detached_names()):
                uses.link(name, *self.producers(name), self.colocation(name))
            self._uses = uses
        return self._uses

    def _detached_names(self) -> Iterator[str]:
        for c in self._copies.values():
            for k in c.detached:
                if k not in c.removed:
                    yield c.name(k)

    # -- whole-graph views ----------------------------------------------------------------
    def check_acyclic(self) -> None:
        """Raise InvalidGraphError if the graph has a cycle other than loop back-edges (linear)."""
        back = {name for name, node in self._nodes.items() if node.op in BACK_EDGE_OPS}
        cycle = find_cycle({name: without(self.producers(name), back) for name in self._nodes})
        if cycle:
            raise InvalidGraphError(f"the graph has a cycle through node(s) {', '.join(cycle[:5])}")

    def ancestors(self, roots: Iterable[str], stop=None) -> set[str]:
        """Nodes reachable backwards from `roots` (included) over data and control edges;
        `stop(name)` true means: include the node but do not walk past it."""
        return walks.ancestors(self.producers, roots, stop, self._parsed)

    def descendants(self, roots: Iterable[str], through_control: bool = True) -> set[str]:
        """Nodes reachable forwards from `roots` (included); over data edges only if not
        `through_control`."""
        copy_readers = self._copy_readers if self._copies else None
        return walks.descendants(self._index(), self.producers, copy_readers, roots, through_control)

    def finish(self) -> bytearray:
        """The graph as a serialized GraphDef, deterministic: parsed nodes in order, then each
        copy's, then library and versions; the graph is left empty (see emit.py)."""
        return emit.finish(self)


def _output_read(ref: str) -> tuple[str, int] | None:
    colon = ref.rfind(":")
    if colon < 0:
        return None
    index = int(ref[colon + 1 :])
    return (ref[:colon], index) if index else None
