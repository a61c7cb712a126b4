"""Copies of a group of nodes made by renaming their serialized bytes: a template serialized once,
then per copy a length-preserving rename (so protobuf's framing stays valid) and a C++ parse."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InternalError
from .graph import GraphDef, NodeDef


def template(nodes: Iterable[NodeDef]) -> bytes:
    """`nodes`, without devices (placement is per copy), serialized as one GraphDef."""
    graph = GraphDef()
    graph.node.extend(nodes)
    for node in graph.node:
        node.device = ""
    return graph.SerializeToString()


def input_field(ref: str) -> bytes:
    """How `ref` is encoded as one NodeDef input entry (field 3, length-delimited)."""
    data = ref.encode()
    size, prefix = len(data), bytearray()
    while True:
        byte = size & 0x7F
        size >>= 7
        prefix.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x1a" + bytes(prefix) + data


def renamed(data: bytes, renames: list[tuple[bytes, bytes]], expected: int) -> GraphDef:
    """The template `data` with each (old, new) byte string replaced, parsed.

    Every pair must have equal lengths: a rename that changed a length would corrupt the framing.
    The caller guarantees that the old strings occur only where meant (graphpass only renames
    strings of its own making, in graphs that contain none like them).

    Raises:
        InternalError: a rename changes a length, or the copy has not `expected` nodes.
    """
    for old, new in renames:
        if len(old) != len(new):
            raise InternalError(f"template rename {old!r} -> {new!r} changes the length")
        data = data.replace(old, new)
    copy = GraphDef.FromString(data)
    if len(copy.node) != expected:
        raise InternalError(f"a template copy has {len(copy.node)} nodes, not {expected}")
    return copy
