"""Graph: a GraphDef's nodes by name, in order, with a def-use index (data, control and colocation uses)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np
from tensorflow.core.framework import graph_pb2, node_def_pb2

from ..errors import InternalError, InvalidGraphError
from . import names

if TYPE_CHECKING:
    from .templates import Copy

NodeDef = node_def_pb2.NodeDef
GraphDef = graph_pb2.GraphDef

BACK_EDGE_OPS = frozenset({"NextIteration", "RefNextIteration"})
NODE_TAG = b"\x0a"  # GraphDef.node: field 1, length-delimited


@dataclass(frozen=True)
class Block:
    """Nodes that exist only as bytes written at output time: copies of the nodes named
    `twin_prefix + base`, named `prefix + base` for each base in `bases`. `render()` gives them
    as GraphDef node entries (field 1), deterministic, from the twins as they are then: a copy
    of template bytes with the bytes in which it differs (see templates.Copy)."""

    prefix: str
    twin_prefix: str
    bases: frozenset[str]
    render: Callable[[], Copy]
    # After render(): the node entries of parsed nodes it serialized on the way, by name (the
    # output reuses them rather than serializing those nodes again).
    serialized: Callable[[], Mapping[str, bytes | memoryview]] | None = None


class Graph:
    """Nodes of one GraphDef, addressable by name, kept in a stable (insertion) order.

    The NodeDefs are the protobuf messages themselves: reading them is free, and the
    Rewriter is the only code that changes them. Each node's inputs are parsed once into
    producer names (data and control separately; equal control lists share one tuple) and
    cached until the Rewriter changes them, which hands over the parse of what it writes; the
    verifier relies on these caches. The use index (_Uses) is built from them, kept exact by
    the Rewriter, or dropped and rebuilt after a bulk insertion.

    Blocks (see Block) hold towers copied as bytes. Their nodes exist for membership, length
    and `twin`, but are never parsed: iteration, `node`, `get` and the use index cover the
    parsed nodes only, and nothing may change a block. They go last in the output.
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
        self._uses: _Uses | None = None  # built when first asked, then kept exact or dropped
        self._blocks: dict[str, Block] = {}  # by prefix
        self._made = GraphDef()  # holds the nodes new_node makes
        self._templates: set[str] = set()  # nodes blocks copy: only their devices may change

    # -- reading -------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._nodes or (bool(self._blocks) and self._block_of(name) is not None)

    def __len__(self) -> int:
        return len(self._nodes) + sum(len(b.bases) for b in self._blocks.values())

    def _block_of(self, name: str) -> Block | None:
        slash = name.find("/")
        block = self._blocks.get(name[: slash + 1]) if slash > 0 else None
        return block if block is not None and name[slash + 1 :] in block.bases else None

    def twin(self, name: str) -> NodeDef | None:
        """For a node in a block, the parsed node it is a renamed copy of (same op, attrs and
        input structure); for a parsed node, itself; else None."""
        node = self._nodes.get(name)
        if node is not None or not self._blocks:
            return node
        block = self._block_of(name)
        return None if block is None else self._nodes.get(block.twin_prefix + name[len(block.prefix) :])

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

    def producers(self, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(data producers, control producers) of node `name`, parsed once; nodes with equal
        control inputs share one control tuple (the same object)."""
        cached = self._parsed.get(name)
        if cached is None:
            refs = list(self._nodes[name].input)
            k = 0
            for ref in refs:  # the data inputs
                if ref[:1] == "^":
                    break
                k += 1
            if not names.all_control(refs[k:]):
                raise InternalError(f"node '{name}' has a data input after a control input")
            cached = self._record(name, refs, k)
        return cached

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
        """Cache node `name`'s parsed inputs: data and (shared) control producers, and the
        (producer, index) of each data input reading an output other than 0."""
        parsed = self._parsed[name] = (data, ctrl)
        self._reads[name] = reads
        return parsed

    def _output_reads(self, name: str) -> tuple[tuple[str, int], ...]:
        """(producer, index) of each data input of `name` that reads an output other than 0."""
        reads = self._reads.get(name)
        if reads is None:
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
            node = self._nodes[name]
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
        """Nodes that read `name` through a data or control input, in graph order (or, for nodes
        whose inputs changed since the index was built, in the order they changed)."""
        return self._index().users(name)

    def colocation_users(self, name: str) -> list[str]:
        """Nodes whose `_class` attribute names `name`."""
        users = self._index().coloc.get(name)
        return list(users) if users else []

    def producer_op(self, ref: str) -> str:
        node = self.twin(names.node_of(ref))
        if node is None:
            raise InternalError(f"no node named '{names.node_of(ref)}' in the graph")
        return node.op

    def _index(self) -> _Uses:
        if self._uses is None:
            uses = _Uses()
            for name in self._nodes:
                uses.link(name, *self.producers(name), self.colocation(name))
            self._uses = uses
        return self._uses

    # -- index upkeep, called by the Rewriter only -----------------------------------------
    def _link(self, name: str) -> None:
        if self._uses is not None:
            self._uses.link(name, *self.producers(name), self.colocation(name))

    def _unlink(self, name: str) -> None:
        """Take node `name` out of the use index and forget its parse (its inputs or
        colocation are about to change, or it is going)."""
        if self._uses is not None:
            self._uses.unlink(name, *self.producers(name), self.colocation(name))
        self._forget(name)

    def _forget(self, name: str) -> None:
        self._parsed.pop(name, None)
        self._reads.pop(name, None)
        self._colocated.pop(name, None)

    def _inputs_written(
        self,
        name: str,
        refs: Sequence[str],
        data: int,
        colocation: tuple[str, ...] | None = None,
        ctrl: tuple[str, ...] | None = None,
    ) -> None:
        """Record the parse of node `name`'s inputs from `refs`, the strings just written to it
        (its first `data` ones are the data inputs; `ctrl`: the others' producers, if known), and
        its colocation targets if given: cheaper than reading them back."""
        self._record(name, refs, data, ctrl)
        if colocation is not None:
            self._colocated[name] = colocation

    def _insert(
        self, node: NodeDef, refs: Sequence[str] | None = None, data: int = 0, colocation: tuple | None = None
    ) -> None:
        """Add `node`; `refs`, `data`, `colocation`: as written (see _inputs_written)."""
        name = node.name
        if name in self:
            raise InternalError(f"a node named '{name}' already exists")
        self._nodes[name] = node
        if refs is not None:
            self._inputs_written(name, refs, data, colocation)
        self._link(name)

    def _insert_many(
        self, nodes: Iterable[NodeDef], link: bool = True, inputs: Iterable | None = None
    ) -> None:
        """Add many nodes at once. `link`: keep the use index up to date (else it is rebuilt
        when next needed: cheaper for a graph's worth of nodes). `inputs`: per node, None or
        (refs, data, colocation, ctrl) as for _inputs_written."""
        table = self._nodes
        for node, written in (
            zip(nodes, inputs, strict=True) if inputs is not None else ((n, None) for n in nodes)
        ):
            name = node.name
            if name in table:
                raise InternalError(f"a node named '{name}' already exists")
            table[name] = node
            if written is not None:
                self._inputs_written(name, *written)
            if link:
                self._link(name)
        if not link:
            self._uses = None

    def _check_changeable(self, names_: Iterable[str]) -> None:
        """Refuse to change what byte-copied towers copy (they would silently differ)."""
        if self._templates:
            hit = next((n for n in names_ if n in self._templates), None)
            if hit is not None:
                raise InternalError(
                    f"node '{hit}' is the template of towers copied as bytes; only its device may change"
                )

    def _add_block(self, block: Block) -> None:
        """Add a block of byte-copied nodes; the caller guarantees their names are free and that
        they read only nodes of the graph (the verifier takes their edges as checked)."""
        if block.prefix in self._blocks or block.prefix.count("/") != 1 or not block.prefix.endswith("/"):
            raise InternalError(f"cannot add a block of nodes named '{block.prefix}...'")
        self._blocks[block.prefix] = block
        self._templates.update(block.twin_prefix + base for base in block.bases)

    def _delete(self, name: str) -> None:
        self._unlink(name)
        del self._nodes[name]

    def _delete_many(self, names_: Iterable[str]) -> None:
        """Remove many nodes at once; the use index is rebuilt when next needed."""
        for name in names_:
            del self._nodes[name]
            self._forget(name)
        self._uses = None

    # -- whole-graph views ----------------------------------------------------------------
    def check_acyclic(self) -> None:
        """Raise InvalidGraphError if the graph has a cycle other than loop back-edges (linear)."""
        cycle = find_cycle(self._predecessors())
        if cycle:
            raise InvalidGraphError(f"the graph has a cycle through node(s) {', '.join(cycle[:5])}")

    def _predecessors(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Each node's (data, control) producers, but for loop back-edges."""
        back = {name for name, node in self._nodes.items() if node.op in BACK_EDGE_OPS}
        return {name: without(self.producers(name), back) for name in self._nodes}

    def ancestors(self, roots: Iterable[str], stop=None) -> set[str]:
        """Nodes reachable backwards from `roots` (included) over data and control edges.

        `stop(name)` true means: include the node but do not walk past it.
        """
        seen: set[str] = set()
        expanded: set[int] = set()  # control tuples pushed already
        stack = list(roots)
        producers = self.producers
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if stop is not None and stop(n):
                continue
            data, ctrl = producers(n)
            stack.extend(data)
            if ctrl and id(ctrl) not in expanded:
                expanded.add(id(ctrl))
                stack.extend(ctrl)
        return seen

    def descendants(self, roots: Iterable[str], through_control: bool = True) -> set[str]:
        """Nodes reachable forwards from `roots` (included); over data edges only if not
        `through_control`."""
        uses = self._index()
        data_users, control_sets, readers = uses.data, uses.sets, uses.readers
        seen: set[str] = set()
        expanded: set[int] = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            found = data_users.get(n)
            if found:
                stack.extend(found)
            if through_control:
                sets = control_sets.get(n)
                if sets:
                    for key in sets:
                        if key not in expanded:
                            expanded.add(key)
                            stack.extend(readers[key])
        return seen

    def finish(self) -> bytearray:
        """The graph as a serialized GraphDef, deterministic: parsed nodes in order, then the
        blocks, then library and versions (the field order protobuf itself writes); the graph is
        left empty.

        Memory peaks here: what the output needs is taken first, then the graph lets go of the
        rest (nodes, caches, and blocks, whose renderers hold the passes' state, which holds this
        graph: a cycle only the cycle collector would free, by walking every object the rewrite
        made), then one join writes the output, blocks as their template bytes, whose copies'
        differing bytes are then overwritten in place."""
        copies = [b.render() for b in self._blocks.values()]
        known: dict[str, bytes | memoryview] = {}
        for entries in {
            id(m): m for b in self._blocks.values() if b.serialized for m in [b.serialized()]
        }.values():
            known.update(entries)
        tail = GraphDef()
        tail.versions.CopyFrom(self.versions)
        if self.library.ByteSize():
            tail.library.CopyFrom(self.library)
        end = tail.SerializeToString(deterministic=True)
        parts = node_entries_of(self._nodes.values(), known) + [c.source for c in copies] + [end]
        del known
        self._hold(GraphDef())
        out = bytearray().join(parts)
        del parts
        if any(c.writes for c in copies):
            view = np.frombuffer(out, np.uint8)  # writes go to `out`
            start = len(out) - len(end) - sum(len(c.source) for c in copies)
            for c in copies:
                c.write(view[start : start + len(c.source)])
                start += len(c.source)
            del view  # a bytearray with views on it cannot be resized
        return out


class _Uses:
    """Who reads each node. Data readers with their edge counts; control readers through the
    shared control tuples (linked once per tuple, however many nodes carry it: big graphs repeat
    a few long ones); colocation readers. Readers come in the order they were last linked."""

    def __init__(self):
        self.data: dict[str, dict[str, int]] = {}
        self.sets: dict[str, dict[int, tuple[str, ...]]] = {}  # producer -> tuples holding it, by id
        self.readers: dict[int, dict[str, None]] = {}  # tuple id -> nodes whose control inputs it is
        self.coloc: dict[str, dict[str, int]] = {}
        self.linked: dict[str, int] = {}
        self.clock = 0

    def link(self, name: str, data: tuple[str, ...], ctrl: tuple[str, ...], coloc: tuple[str, ...]) -> None:
        self.clock += 1
        self.linked[name] = self.clock
        for p in data:
            users = self.data.get(p)
            if users is None:
                self.data[p] = {name: 1}
            else:
                users[name] = users.get(name, 0) + 1
        if ctrl:
            key = id(ctrl)
            readers = self.readers.get(key)
            if readers is None:
                self.readers[key] = {name: None}
                for p in ctrl:
                    self.sets.setdefault(p, {})[key] = ctrl
            else:
                readers[name] = None
        for target in coloc:
            users = self.coloc.setdefault(target, {})
            users[name] = users.get(name, 0) + 1

    def unlink(self, name: str, data: tuple[str, ...], ctrl: tuple[str, ...], coloc: tuple[str, ...]) -> None:
        for p in data:
            _dec(self.data, p, name)
        if ctrl:
            key = id(ctrl)
            readers = self.readers.get(key)
            if readers is not None and name in readers:
                del readers[name]
                if not readers:
                    del self.readers[key]
                    for p in ctrl:
                        sets = self.sets.get(p)
                        if sets is not None:
                            sets.pop(key, None)
                            if not sets:
                                del self.sets[p]
        for target in coloc:
            _dec(self.coloc, target, name)

    def users(self, name: str) -> list[str]:
        data = self.data.get(name)
        sets = self.sets.get(name)
        if not sets:
            return list(data) if data else []
        if not data and len(sets) == 1:
            return list(self.readers[next(iter(sets))])
        found = dict.fromkeys(data) if data else {}
        for key in sets:
            found.update(self.readers[key])
        return sorted(found, key=self.linked.__getitem__)


def serialize_nodes(nodes: Iterable[NodeDef]) -> bytes:
    """`nodes` as GraphDef node entries (field 1), deterministic: what a GraphDef holding only
    them serializes to, without copying them into one."""
    return b"".join(node_entries_of(nodes))


def node_entries_of(nodes: Iterable[NodeDef], known: Mapping[str, bytes | memoryview] | None = None) -> list:
    """The pieces of serialize_nodes(nodes), unjoined; `known`: entries already made, by name."""
    parts: list = []
    for node in nodes:
        entry = known.get(node.name) if known else None
        if entry is not None:
            parts.append(entry)
            continue
        data = node.SerializeToString(deterministic=True)
        parts += (NODE_TAG, varint(len(data)), data)
    return parts


def varint(value: int) -> bytes:
    """Protobuf's base-128 encoding of a non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def without(producers: tuple[tuple[str, ...], tuple[str, ...]], back: set[str]):
    """(data, control) `producers` without the nodes in `back` (keeping shared tuples shared)."""
    if not back:
        return producers
    data, ctrl = producers
    if not back.isdisjoint(data):
        data = tuple(p for p in data if p not in back)
    if not back.isdisjoint(ctrl):
        ctrl = tuple(p for p in ctrl if p not in back)
    return data, ctrl


def _output_read(ref: str) -> tuple[str, int] | None:
    colon = ref.rfind(":")
    if colon < 0:
        return None
    index = int(ref[colon + 1 :])
    return (ref[:colon], index) if index else None


def node_entries(data: bytes) -> list[tuple[int, int]] | None:
    """Where each node (field 1) of serialized GraphDef `data` lies: (start, end) of its NodeDef
    bytes, in order; None if the top level holds a wire type this reader does not walk."""
    try:
        return _node_entries(data)
    except IndexError:  # truncated
        return None


def _node_entries(data: bytes) -> list[tuple[int, int]] | None:
    out = []
    pos, size = 0, len(data)
    while pos < size:
        tag, pos = _read_varint(data, pos)
        wire = tag & 7
        if wire == 2:
            length, pos = _read_varint(data, pos)
            if tag == 0x0A:
                out.append((pos, pos + length))
            pos += length
        elif wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            return None
    return out if pos == size else None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    value, shift = byte & 0x7F, 7
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
    return value, pos + 1


def find_cycle(preds: dict[str, tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """The nodes of a cycle (sorted) in the graph whose edges run into each node from its
    (data, control) producers `preds[node]`, or [] if there is none. Iterative depth-first
    search, linear in the edges; names missing from `preds` have no inputs. A control tuple that
    nodes share (one object) is walked once: when the first of them is done, so are its members."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    walked: set[int] = set()
    none = ((), ())

    def inputs(n: str):
        data, ctrl = preds.get(n, none)
        return chain(data, ctrl) if ctrl and id(ctrl) not in walked else iter(data)

    for root in preds:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [inputs(root)]
        while stack:
            for p in stack[-1]:
                seen = state.get(p)
                if seen is None:
                    state[p] = 1
                    path.append(p)
                    stack.append(inputs(p))
                    break
                if seen == 1:
                    return sorted(path[path.index(p) :])
            else:
                done = path.pop()
                state[done] = 2
                ctrl = preds.get(done, none)[1]
                if ctrl:
                    walked.add(id(ctrl))
                stack.pop()
    return []


def _dec(index: dict[str, dict[str, int]], key: str, user: str) -> None:
    d = index.get(key)
    if not d or user not in d:
        return
    d[user] -= 1
    if d[user] <= 0:
        del d[user]
        if not d:
            del index[key]
