"""Towers: copies of a template tower's nodes under another tower's prefix, kept as the template's
serialized bytes (a snapshot taken when the copy is made) until output.

A copy's nodes are nodes of the graph like any other (the Graph answers for them: membership,
iteration, producers, users); they are just not parsed until something changes one, which then
becomes a NodeDef of its own, in its place. Where a copy differs from the template is known
from how the template was built, never by searching its bytes: the name of each member, each
input or colocation entry that names a node of the template's tower, and the attrs the caller
says begin with the tower's prefix (loop frame names). Each such string begins with the
template tower's prefix, which the copy's prefix replaces.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InternalError
from . import names
from .wire import DEVICE_TAG, NODE_TAG, NodeLayout, varint
from .wire import field as wire_field


@dataclass(frozen=True)
class Hole:
    """A string in a template node that names something of the template's tower: where its
    prefix starts (in the template's bytes), and the template-space node it names (None for an
    attr value, which names no node)."""

    at: int
    target: str | None


class Template:
    """Tower `index`'s member nodes (named `prefix` + base), serialized as they are when the
    template is made, with where each one differs in a copy.

    Args:
        nodes: the members, in order.
        index, prefix: their tower.
        producers: each member's (data, control) producers, as the graph parses them.
        colocation: each member's colocation targets.
        per_tower: whether a name (outside the members) is a node of tower `index` (a shard of
            an input, a replica, a reduced gradient): the copy reads its own tower's.
        renamed_attrs: per member, the attrs whose string value the caller began with `prefix`
            (loop frame names, a replica's shared_name).
    """

    def __init__(
        self,
        nodes: Sequence,
        index: int,
        prefix: str,
        producers: Sequence[tuple[tuple[str, ...], tuple[str, ...]]],
        colocation: Sequence[tuple[str, ...]],
        per_tower: Callable[[str], bool],
        renamed_attrs: Sequence[tuple[str, ...]] = (),
    ):
        self.index = index
        self.prefix = prefix
        self.names = [n.name for n in nodes]
        if any(not n.startswith(prefix) for n in self.names):
            raise InternalError(f"a template of tower '{prefix}' holds a node named otherwise")
        self.bases = [n[len(prefix) :] for n in self.names]
        self.position = {n: j for j, n in enumerate(self.names)}
        self.ops = [n.op for n in nodes]
        self.devices = [n.device for n in nodes]
        self.producers = list(producers)
        self.colocation = list(colocation)
        member = self.position.__contains__
        inside = lambda x: member(x) or per_tower(x)  # noqa: E731
        parts: list[bytes] = []
        self.spans: list[tuple[int, int]] = []  # body start, body end in `data`
        self.device_spans: list[tuple[int, int]] = []  # the device field (empty where none)
        self.holes: list[list[Hole]] = []
        self.renamed_attrs: list[tuple[str, ...]] = []  # per member: attrs whose value is renamed
        size = 0
        plen = len(prefix)
        seen: dict[str, tuple] = {}  # input -> (node, where its name starts) if it names the tower's
        for j, node in enumerate(nodes):
            body = node.SerializeToString(deterministic=True)
            head = NODE_TAG + varint(len(body))
            start = size + len(head)
            keys = tuple(renamed_attrs[j]) if renamed_attrs else ()
            wanted = (names.COLOCATION_ATTR,) if names.COLOCATION_ATTR in node.attr else ()
            layout = NodeLayout(body, wanted=(*wanted, *keys))
            holes = [Hole(start + layout.name[0], self.names[j])]
            for ref, (s, _) in zip(node.input, layout.inputs, strict=True):
                hole = seen.get(ref)
                if hole is None:
                    target = names.node_of(ref)
                    hole = seen[ref] = (target, 1 if ref[:1] == "^" else 0) if inside(target) else ()
                if hole:
                    holes.append(Hole(start + s + hole[1], hole[0]))
            for (s, _), target in zip(_colocation_strings(body, layout), colocation[j], strict=False):
                if inside(target):
                    holes.append(Hole(start + s + len(names.COLOCATION_PREFIX), target))
            for key in keys:
                spans = layout.attrs.get(key, ())
                if len(spans) != 1 or body[spans[0][0] : spans[0][0] + plen] != prefix.encode():
                    raise InternalError(f"attr '{key}' of '{self.names[j]}' does not begin with '{prefix}'")
                holes.append(Hole(start + spans[0][0], None))
            self.renamed_attrs.append(keys)
            dev = layout.device
            d0, d1 = (start + dev[0], start + dev[1]) if dev else (start + layout.device_at(),) * 2
            self.device_spans.append((d0, d1))
            self.holes.append(holes)
            self.spans.append((start, start + len(body)))
            parts += (head, body)
            size = start + len(body)
        self.data = b"".join(parts)
        # The same, as arrays for the copies' bulk patching: node entries (with their heads),
        # holes (where, in which member), device values, and the members naming outside nodes
        # of their tower (whose copies need their counterparts named by the prefix).
        starts = np.array([s for s, _ in self.spans], np.int64)
        ends = np.array([e for _, e in self.spans], np.int64)
        self.entry_starts = starts - np.array(
            [_head_size(int(e - s)) for s, e in zip(starts, ends, strict=True)], np.int64
        )
        self.entry_ends = ends
        self.device_ends = np.array([e for _, e in self.device_spans], np.int64)
        self.hole_at = np.array([h.at for hs in self.holes for h in hs], np.int64)
        self.hole_member = np.array([j for j, hs in enumerate(self.holes) for _ in hs], np.int64)
        self.outside_targets = {
            j: [h.target for h in hs if h.target is not None and h.target not in self.position]
            for j, hs in enumerate(self.holes)
        }
        self.outside_targets = {j: ts for j, ts in self.outside_targets.items() if ts}
        self.readers: dict[str, list[int]] = {}  # template-space producer -> members reading it
        for j, (data, ctrl) in enumerate(self.producers):
            for p in dict.fromkeys(data + ctrl):
                self.readers.setdefault(p, []).append(j)
        self.coloc_readers: dict[str, list[int]] = {}
        for j, targets in enumerate(self.colocation):
            for t in dict.fromkeys(targets):
                self.coloc_readers.setdefault(t, []).append(j)

    def __len__(self) -> int:
        return len(self.names)


def _head_size(body: int) -> int:
    """Bytes of a node entry's tag and length for a body of `body` bytes."""
    return 1 + len(varint(body))


def _differing(old: bytes, new: bytes, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where `new` written over `old` (same length) at each of `starts` changes bytes, and to what."""
    if len(old) != len(new) or not len(starts):
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    a, b = np.frombuffer(old, np.uint8), np.frombuffer(new, np.uint8)
    diff = np.flatnonzero(a != b)
    return (starts[:, None] + diff[None, :]).ravel(), np.tile(b[diff], len(starts))


def _colocation_strings(body: bytes, layout: NodeLayout) -> list[tuple[int, int]]:
    """The `_class` strings of a node that name a node (`loc:@...`), in order."""
    out = []
    for s, e in layout.attrs.get(names.COLOCATION_ATTR, ()):
        if body[s : s + len(names.COLOCATION_PREFIX)] == names.COLOCATION_PREFIX:
            out.append((s, e))
    return out


@dataclass
class Copy:
    """Tower `index`'s copy of template members `positions` (all of them if None), named `prefix`
    + base, on `devices` (one per copied member). `rename` maps a template-space name to this
    tower's (members: prefix + base; other nodes of the template's tower: this tower's
    counterpart; anything else: itself)."""

    template: Template
    index: int
    prefix: str
    positions: list[int]
    devices: list[str]
    rename: Callable[[str], str]
    detached: dict[int, object] = field(default_factory=dict)  # slot -> its own NodeDef
    removed: set[int] = field(default_factory=set)
    slot_of: dict[str, int] = field(default_factory=dict)  # base -> slot (index into positions)
    _ctrl: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.devices) != len(self.positions):
            raise InternalError(f"{len(self.devices)} devices for a copy of {len(self.positions)} nodes")
        bases = self.template.bases
        self.slot_of = {bases[p]: k for k, p in enumerate(self.positions)}

    def __len__(self) -> int:
        return len(self.positions) - len(self.removed)

    def slot(self, name: str) -> int | None:
        """The slot of node `name` of this copy (it must start with the prefix), or None."""
        k = self.slot_of.get(name[len(self.prefix) :])
        return None if k is None or k in self.removed else k

    def name(self, k: int) -> str:
        return self.prefix + self.template.bases[self.positions[k]]

    def live(self) -> list[int]:
        return [k for k in range(len(self.positions)) if k not in self.removed]

    def producers(self, k: int, shared: Callable[[tuple[str, ...]], tuple[str, ...]]):
        """Slot k's (data, control) producers in this tower (control tuples shared per template
        tuple, through `shared`)."""
        data, ctrl = self.template.producers[self.positions[k]]
        rename = self.rename
        out = tuple(map(rename, data))
        if ctrl:
            done = self._ctrl.get(id(ctrl))
            if done is None:
                done = self._ctrl[id(ctrl)] = shared(tuple(map(rename, ctrl)))
            return out, done
        return out, ()

    def colocation(self, k: int) -> tuple[str, ...]:
        return tuple(map(self.rename, self.template.colocation[self.positions[k]]))

    def entry(self, k: int) -> bytes:
        """Slot k's node entry (tag, length, NodeDef bytes) as the output would write it."""
        node = self.detached.get(k)
        if node is not None:
            data = node.SerializeToString(deterministic=True)
            return NODE_TAG + varint(len(data)) + data
        return b"".join(bytes(p) for p in self._alone(k, self.devices[k]))

    # -- output ------------------------------------------------------------------------------
    def render(self) -> tuple[list, np.ndarray, np.ndarray]:
        """The copy's node entries, in slot order: pieces to join (views of the template's bytes
        for runs of members written as copies, bytes for nodes written on their own) and the
        bytes that differ in those runs, as (offsets into the joined pieces, values): the prefix
        at each hole, a device of the same length. Nodes that differ otherwise (changed through
        the Rewriter, a device of another length, a counterpart named otherwise) are on their own.
        The template's bytes are not copied here: the caller patches its joined output."""
        t = self.template
        n = len(self.positions)
        pos = np.asarray(self.positions, np.int64)
        starts, ends = t.entry_starts[pos], t.entry_ends[pos]
        own = self._own_nodes(pos)
        same, moved = self._device_changes(own)
        alone = {
            k: ([] if k in self.removed else self._alone(k, moved.get(k))) for k in sorted(own | moved.keys())
        }
        sizes = ends - starts
        for k, pieces in alone.items():
            sizes[k] = sum(len(p) for p in pieces)
        shift = np.cumsum(sizes) - sizes - starts  # template offset -> output offset, per slot
        bulk = np.ones(n, bool)
        bulk[list(alone)] = False
        at = [_differing(t.prefix.encode(), self.prefix.encode(), self._hole_offsets(pos, shift, bulk))]
        for (was, device), slots in same.items():
            ks = np.asarray(slots, np.int64)
            d1 = t.device_ends[pos[ks]]
            at.append(_differing(was.encode(), device.encode(), d1 + shift[ks] - len(was.encode())))
        edges = {0, n, *alone, *(k + 1 for k in alone)}
        edges.update((np.flatnonzero(starts[1:] != ends[:-1]) + 1).tolist())
        view = memoryview(t.data)
        parts: list = []
        cuts = sorted(edges)
        starts_l, ends_l = starts.tolist(), ends.tolist()
        for a, b in itertools.pairwise(cuts):
            if a in alone:
                parts += alone[a]
            else:
                parts.append(view[starts_l[a] : ends_l[b - 1]])
        return parts, np.concatenate([a for a, _ in at]), np.concatenate([v for _, v in at])

    def _hole_offsets(self, pos: np.ndarray, shift: np.ndarray, bulk: np.ndarray) -> np.ndarray:
        """Output offsets of the holes of the members written as copies (where the prefix starts)."""
        t = self.template
        if len(self.prefix) != len(t.prefix) or not len(t.hole_at):
            return np.zeros(0, np.int64)
        slot = np.full(len(t), -1, np.int64)
        slot[pos[bulk]] = np.flatnonzero(bulk)
        k = slot[t.hole_member]
        keep = k >= 0
        return t.hole_at[keep] + shift[k[keep]]

    def _own_nodes(self, pos: np.ndarray) -> set[int]:
        """Slots written on their own: removed, changed, or naming a counterpart otherwise than
        by the prefix (or the prefix has another length)."""
        t = self.template
        own = set(self.removed) | set(self.detached)
        if len(self.prefix) != len(t.prefix):
            return own | set(range(len(pos)))
        plen = len(t.prefix)
        bad: dict[str, bool] = {}
        slot_of, bases = self.slot_of, t.bases
        for j, targets in t.outside_targets.items():
            k = slot_of.get(bases[j])
            if k is None or self.positions[k] != j:
                continue
            for x in targets:
                ok = bad.get(x)
                if ok is None:
                    ok = bad[x] = self.rename(x) == self.prefix + x[plen:]
                if not ok:
                    own.add(k)
                    break
        return own

    def _device_changes(self, own: set[int]) -> tuple[dict[tuple[str, str], list[int]], dict[int, str]]:
        """Slots whose device changes, outside `own`: by (template device, device) where the value
        keeps its length (patched in place), and slot -> device where it does not (or appears),
        written on their own."""
        t = self.template
        moved: dict[int, str] = {}
        same: dict[tuple[str, str], list[int]] = {}
        was_of = [t.devices[j] for j in self.positions]
        for k, (was, device) in enumerate(zip(was_of, self.devices, strict=True)):
            if device == was or k in own:
                continue
            if len(device) != len(was) or not was:
                moved[k] = device
            else:
                pair = (was, device)
                group = same.get(pair)
                if group is None:
                    same[pair] = [k]
                else:
                    group.append(k)
        return same, moved

    def _alone(self, k: int, device: str | None) -> list:
        """Slot k's entry written on its own."""
        node = self.detached.get(k)
        if node is None:
            if device is not None and self._prefix_ok(k):
                return self._spliced(k, device)
            node = self.materialize(k)
        body = node.SerializeToString(deterministic=True)
        return [NODE_TAG, varint(len(body)), body]

    def _prefix_ok(self, k: int) -> bool:
        return len(self.prefix) == len(self.template.prefix) and not self._own_nodes_one(k)

    def _own_nodes_one(self, k: int) -> bool:
        t = self.template
        plen = len(t.prefix)
        return any(
            self.rename(x) != self.prefix + x[plen:] for x in t.outside_targets.get(self.positions[k], ())
        )

    def _spliced(self, k: int, device: str) -> list:
        """Slot k with the prefix renamed and its device field replaced (another length)."""
        t = self.template
        j = self.positions[k]
        start, end = t.spans[j]
        body = bytearray(t.data[start:end])
        old, new = t.prefix.encode(), self.prefix.encode()
        for h in t.holes[j]:
            body[h.at - start : h.at - start + len(old)] = new
        d0, d1 = t.device_spans[j]
        dev_field = wire_field(DEVICE_TAG, device) if device else b""
        body = bytes(body[: d0 - start]) + dev_field + bytes(body[d1 - start :])
        return [NODE_TAG, varint(len(body)), body]

    def materialize(self, k: int):
        """Slot k as a NodeDef of its own (what a change to it starts from)."""
        from tensorflow.core.framework import node_def_pb2

        node = self.detached.get(k)
        if node is not None:
            return node
        t = self.template
        j = self.positions[k]
        start, end = t.spans[j]
        return self._renamed(node_def_pb2.NodeDef.FromString(t.data[start:end]), self.devices[k])

    def _renamed(self, node, device: str):
        """`node` (template member j, parsed) with its strings renamed for this tower."""
        t = self.template
        plen = len(t.prefix)
        j = t.position[node.name]
        node.name = self.prefix + node.name[plen:]
        refs = []
        for ref in node.input:
            r = names.parse(ref)
            refs.append(str(names.Ref(self.rename(r.node), r.index, r.control)))
        del node.input[:]
        node.input.extend(refs)
        if names.COLOCATION_ATTR in node.attr:
            names.set_colocation(node, [self.rename(x) for x in names.colocation_targets(node)])
        for key in t.renamed_attrs[j]:
            value = node.attr[key]
            value.s = self.prefix.encode() + value.s[plen:]
        node.device = device
        return node
