"""The protobuf wire format of GraphDefs and NodeDefs, as far as graphpass writes or walks it."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping

NODE_TAG = b"\x0a"  # GraphDef.node: field 1, length-delimited
NAME_FIELD, OP_FIELD, INPUT_FIELD, DEVICE_FIELD, ATTR_FIELD = 1, 2, 3, 4, 5
DEVICE_TAG = b"\x22"  # NodeDef.device: field 4, length-delimited
NAME_TAG, OP_TAG, INPUT_TAG = 0x0A, 0x12, 0x1A  # NodeDef fields 1-3, length-delimited (tag bytes)
HEAD_TAGS = frozenset((NAME_TAG, OP_TAG, INPUT_TAG, DEVICE_TAG[0]))
AFTER_DEVICE = frozenset(b"\x2a\x32\x3a")  # attr, experimental_debug_info, experimental_type
ATTR_S, ATTR_LIST = 2, 1  # AttrValue: s (bytes), list (ListValue)
LIST_S = 2  # AttrValue.ListValue: s (repeated bytes)


def varint(value: int) -> bytes:
    """Protobuf's base-128 encoding of a non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data, pos: int) -> tuple[int, int]:
    byte = data[pos]
    value, shift = byte & 0x7F, 7
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
    return value, pos + 1


def field(tag: bytes, text: str) -> bytes:
    """A length-delimited field: tag, length, UTF-8 bytes of `text`."""
    data = text.encode()
    return tag + varint(len(data)) + data


def fields(data, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in data[start:end]; for
    varints and fixed-width fields the span is the encoded value."""
    pos = start
    while pos < end:
        tag, pos = read_varint(data, pos)
        wire = tag & 7
        if wire == 2:
            length, pos = read_varint(data, pos)
            after = pos + length
        elif wire == 0:
            _, after = read_varint(data, pos)
        elif wire in (1, 5):
            after = pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire} is not walked")
        if after > end:
            raise ValueError("truncated")
        yield tag >> 3, wire, pos, after
        pos = after


def node_entries(data: bytes) -> list[tuple[int, int]] | None:
    """Where each node (field 1) of serialized GraphDef `data` lies: (start, end) of its NodeDef
    bytes, in order; None if the top level holds what this reader does not walk."""
    try:
        out = [(s, e) for number, wire, s, e in fields(data, 0, len(data)) if number == 1 and wire == 2]
    except (IndexError, ValueError):  # truncated, or a group
        return None
    return out


def node_entries_of(nodes: Iterable, known: Mapping[str, bytes | memoryview] | None = None) -> list:
    """GraphDef node entries (field 1) of `nodes`, deterministic, unjoined; `known`: entries
    already made, by name."""
    parts: list = []
    for node in nodes:
        entry = known.get(node.name) if known else None
        if entry is not None:
            parts.append(entry)
            continue
        data = node.SerializeToString(deterministic=True)
        parts += (NODE_TAG, varint(len(data)), data)
    return parts


def serialize_nodes(nodes: Iterable) -> bytes:
    """`nodes` as GraphDef node entries: what a GraphDef holding only them serializes to."""
    return b"".join(node_entries_of(nodes))


class NodeLayout:
    """Where the strings of one serialized NodeDef lie (offsets into its bytes): the name, each
    input, the device field, and the string values of its attrs (for `_class`, each list entry).
    Read by walking the fields, never by searching for a string."""

    __slots__ = ("name", "op_end", "inputs", "device", "attrs")

    def __init__(self, body, start: int = 0, end: int | None = None, wanted: Container[str] | None = None):
        """`wanted`: the attrs whose strings to locate (None: all of them; empty: none, and the
        walk stops at the first field after the device)."""
        end = len(body) if end is None else end
        self.name: tuple[int, int] | None = None
        self.op_end = start
        self.inputs: list[tuple[int, int]] = []
        self.device: tuple[int, int] | None = None  # the whole field: tag, length, bytes
        self.attrs: dict[str, list[tuple[int, int]]] = {}
        prev = start = self._head(body, start, end)
        none_wanted = wanted is not None and not wanted
        for number, wire, s, e in fields(body, start, end):
            if number > DEVICE_FIELD and none_wanted:
                break
            if number == NAME_FIELD:
                self.name = (s, e)
                self.op_end = e
            elif number == OP_FIELD:
                self.op_end = e
            elif number == INPUT_FIELD:
                self.inputs.append((s, e))
            elif number == DEVICE_FIELD:
                self.device = (prev, e)
            elif number == ATTR_FIELD and wire == 2:
                key, value = None, None
                for n2, _, s2, e2 in fields(body, s, e):
                    if n2 == 1:
                        key = bytes(body[s2:e2]).decode()
                        if wanted is not None and key not in wanted:
                            break  # the key comes first: an attr not asked for is not walked
                    elif n2 == 2:
                        value = (s2, e2)
                if key is not None and value is not None and (wanted is None or key in wanted):
                    self.attrs[key] = _strings(body, *value)
            prev = e

    def _head(self, body, pos: int, end: int) -> int:
        """Walk the leading string fields 1-4 (name, op, inputs, device: the bulk of a node's
        fields, walked here without the general reader); return where the rest begins."""
        inputs = self.inputs
        while pos < end:
            tag = body[pos]
            if tag not in HEAD_TAGS:
                break
            n = body[pos + 1]
            if n < 0x80:
                s = pos + 2
            else:
                n, s = read_varint(body, pos + 1)
            e = s + n
            if e > end:
                raise ValueError("truncated")
            if tag == INPUT_TAG:
                inputs.append((s, e))
            elif tag == NAME_TAG:
                self.name = (s, e)
                self.op_end = e
            elif tag == OP_TAG:
                self.op_end = e
            else:
                self.device = (pos, e)
            pos = e
        return pos

    def device_at(self) -> int:
        """Where a device field would go: after the inputs (fields are written in number order)."""
        if self.device is not None:
            return self.device[0]
        return self.inputs[-1][1] if self.inputs else self.op_end


def _strings(body, start: int, end: int) -> list[tuple[int, int]]:
    """The string values of an AttrValue: its `s`, or each `list.s`."""
    out = []
    for number, wire, s, e in fields(body, start, end):
        if number == ATTR_S and wire == 2:
            out.append((s, e))
        elif number == ATTR_LIST and wire == 2:
            out += [(s2, e2) for n2, w2, s2, e2 in fields(body, s, e) if n2 == LIST_S and w2 == 2]
    return out
