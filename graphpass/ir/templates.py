"""Copies of a group of nodes made from their serialized bytes: a template serialized once, then per
copy length-preserving renames (protobuf's framing stays valid) and the devices moved, either by
renaming whole device fields or by splicing each node's device in. Nothing is parsed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InternalError
from .graph import NODE_TAG, NodeDef, varint

INPUT_TAG = b"\x1a"  # NodeDef.input: field 3, length-delimited
DEVICE_TAG = b"\x22"  # NodeDef.device: field 4, length-delimited
AFTER_DEVICE = frozenset(b"\x2a\x32\x3a")  # attr, experimental_debug_info, experimental_type


@dataclass(frozen=True)
class Template:
    """Serialized NodeDefs (GraphDef node entries, deterministic) and their devices; per node,
    where its body starts, where its device field starts and ends (fields are written in number
    order: name, op, inputs, device, attrs, ...) and where the body ends."""

    data: bytes
    spans: list[tuple[int, int, int, int]]
    devices: list[str]
    counts: Counter
    found: dict[bytes, np.ndarray] = field(default_factory=dict)  # where strings occur in data, found once


def _field(tag: bytes, text: str) -> bytes:
    data = text.encode()
    return tag + varint(len(data)) + data


def template(nodes: Sequence[NodeDef]) -> Template:
    """`nodes` serialized as they are, with where each one's device field lies."""
    parts: list[bytes] = []
    spans = []
    devices = []
    size = 0
    for node in nodes:
        body = node.SerializeToString(deterministic=True)
        device = node.device
        if device:
            # Names, op and inputs come first and cannot hold a '"' (the field's tag), so the
            # first match is the device field itself.
            dev_field = _field(DEVICE_TAG, device)
            split = body.find(dev_field)
            after = split + len(dev_field)
        else:
            split = len(_field(b"\x0a", node.name)) + (len(_field(b"\x12", node.op)) if node.op else 0)
            split += sum(len(_field(INPUT_TAG, ref)) for ref in node.input)
            after = split
        if split < 0 or (after < len(body) and body[after] not in AFTER_DEVICE):
            raise InternalError(f"node '{node.name}' does not serialize in field order")
        head = NODE_TAG + varint(len(body))
        start = size + len(head)
        spans.append((start, start + split, start + after, start + len(body)))
        parts += (head, body)
        size = start + len(body)
        devices.append(device)
    return Template(b"".join(parts), spans, devices, Counter(devices))


def entries(t: Template, names: Sequence[str]) -> dict[str, memoryview]:
    """The template's node entries (tag, length and body), by node name (`names`, in order)."""
    view = memoryview(t.data)
    return {
        name: view[start - 1 - len(varint(end - start)) : end]
        for name, (start, _, _, end) in zip(names, t.spans, strict=True)
    }


def subset(t: Template, keep: Sequence[int]) -> Template:
    """The template of nodes `keep` (indices into `t`, in order) alone."""
    view = memoryview(t.data)
    parts: list = []
    spans = []
    size = 0
    for j in keep:
        start, split, after, end = t.spans[j]
        head = NODE_TAG + varint(end - start)
        base = size + len(head) - start
        spans.append((start + base, split + base, after + base, end + base))
        parts += (head, view[start:end])
        size = end + base
    devices = [t.devices[j] for j in keep]
    return Template(b"".join(parts), spans, devices, Counter(devices))


@dataclass(frozen=True)
class Copy:
    """A copy of template bytes not written yet: `source`, and the bytes in which the copy differs
    (for each triple: where occurrences of a string start, which of its bytes, the byte written
    there). The output writes it in place."""

    source: bytes | bytearray | memoryview
    writes: list[tuple[np.ndarray, int, int]]

    def write(self, view: np.ndarray) -> None:
        """Make `view` (a writable uint8 array holding a copy of `source`) this copy."""
        for at, j, value in self.writes:
            view[at + j] = value

    def materialize(self) -> bytearray:
        data = bytearray(self.source)
        self.write(np.frombuffer(data, np.uint8))  # writes go to `data`
        return data


def copy_plan(t: Template, renames: list[tuple[bytes, bytes]], devices: Sequence[str]) -> Copy:
    """The template's nodes with each occurrence of each old byte string of `renames` replaced by
    its new one, and node j on `devices[j]`.

    Devices move by renaming whole device fields where that is exact (each old device maps to
    one new one of the same length, found exactly where expected); else each node's device is
    spliced into its bytes. The caller guarantees that the old strings of `renames` occur only
    where meant (graphpass renames only strings of its own making, in graphs with none like them).
    Where the old strings lie is found once per template; a copy then lists only the bytes that
    differ there.

    Raises:
        InternalError: a rename changes a length, or `devices` does not fit the template.
    """
    for old, new in renames:
        if len(old) != len(new):
            raise InternalError(f"template rename {old!r} -> {new!r} changes the length")
    if len(devices) != len(t.spans):
        raise InternalError(f"{len(devices)} devices for a template of {len(t.spans)} nodes")
    moves = _device_moves(t, devices)
    edits = [(old, new) for old, new in renames + (moves or []) if old != new]
    places = [_occurrences(t, old) for old, _ in edits]
    if len(edits) > 1 and _overlap(places, [len(old) for old, _ in edits]):
        raise InternalError("template renames overlap")
    writes = [
        (at, j, b)
        for (old, new), at in zip(edits, places, strict=True)
        for j, (a, b) in enumerate(zip(old, new, strict=True))
        if a != b
    ]
    if moves is not None:
        return Copy(t.data, writes)
    return Copy(_splice(t, Copy(t.data, writes).materialize(), devices), [])


def _occurrences(t: Template, pattern: bytes) -> np.ndarray:
    """Where `pattern` starts in the template's bytes, left to right without overlaps (as
    bytes.replace finds it), found once per template."""
    found = t.found.get(pattern)
    if found is None:
        found = t.found[pattern] = find_all(t.data, pattern)
    return found


def find_all(data: bytes, pattern: bytes) -> np.ndarray:
    """Start offsets of the non-overlapping occurrences of `pattern` in `data`, left to right."""
    size = len(pattern)
    arr = np.frombuffer(data, np.uint8)
    if not size or len(arr) < size:
        return np.zeros(0, np.int64)
    at = np.flatnonzero(arr[: len(arr) - size + 1] == pattern[0])
    for j in range(1, size):
        if not len(at):
            break
        at = at[arr[at + j] == pattern[j]]
    if any(pattern[:k] == pattern[-k:] for k in range(1, size)):  # occurrences may overlap
        kept, end = [], -1
        for a in at.tolist():
            if a >= end:
                kept.append(a)
                end = a + size
        at = np.array(kept, np.int64)
    return at


def _overlap(places: list[np.ndarray], sizes: list[int]) -> bool:
    starts = np.concatenate(places)
    ends = np.concatenate([at + size for at, size in zip(places, sizes, strict=True)])
    order = np.argsort(starts, kind="stable")
    return bool(np.any(starts[order][1:] < ends[order][:-1]))


def _device_moves(t: Template, devices: Sequence[str]) -> list[tuple[bytes, bytes]] | None:
    """Device field renames that put the template's nodes on `devices`, or None if renaming
    cannot do it exactly: an old device that maps to two new ones, a new length, a device added
    where none was, or an old device string that occurs elsewhere than in device fields."""
    moves: dict[str, str] = {}
    for old, new in zip(t.devices, devices, strict=True):
        if moves.setdefault(old, new) != new:
            return None
    moved = sorted((old, new) for old, new in moves.items() if old != new)
    if any(len(old) != len(new) or not old for old, new in moved):
        return None
    fields = [(_field(DEVICE_TAG, old), _field(DEVICE_TAG, new)) for old, new in moved]
    for (dev_field, _), (old, _) in zip(fields, moved, strict=True):
        if len(_occurrences(t, dev_field)) != t.counts[old]:
            return None
    return fields


def _splice(t: Template, data: bytes, devices: Sequence[str]) -> bytes:
    view = memoryview(data)
    fields: dict[str, bytes] = {}
    parts: list = []
    for (start, split, after, end), device in zip(t.spans, devices, strict=True):
        dev_field = fields.get(device)
        if dev_field is None:
            dev_field = fields[device] = _field(DEVICE_TAG, device) if device else b""
        parts.append(NODE_TAG + varint(end - start - (after - split) + len(dev_field)))
        parts.append(view[start:split])
        parts.append(dev_field)
        parts.append(view[after:end])
    return b"".join(parts)
