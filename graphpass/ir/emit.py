"""Graph output: the whole graph serialized once, deterministically, unchanged snapshot bytes reused."""

from __future__ import annotations

import numpy as np
from tensorflow.core.framework import graph_pb2

from .wire import node_entries_of

GraphDef = graph_pb2.GraphDef


def finish(graph) -> bytearray:
    """The graph as a serialized GraphDef, deterministic: parsed nodes in order, then each
    copy's, then library and versions (the field order protobuf itself writes); the graph is
    left empty. A template member not changed since its copies were made is written from its
    snapshot, without serializing it again; copies are joined from their template's bytes and
    patched where they differ, in the output itself."""
    known: dict[str, memoryview] = {}
    for t in {id(c.template): c.template for c in graph._copies.values()}.values():
        view = memoryview(t.data)
        for j, name in enumerate(t.names):
            if name in graph._nodes and name not in graph._changed:
                start, end = t.spans[j]
                known[name] = view[start - _head(end - start) : end]
    copies = [c.render() for c in graph._copies.values()]
    tail = GraphDef()
    tail.versions.CopyFrom(graph.versions)
    if graph.library.ByteSize():
        tail.library.CopyFrom(graph.library)
    end = tail.SerializeToString(deterministic=True)
    parts = node_entries_of(graph._nodes.values(), known)
    offset = sum(map(len, parts))
    patches = []
    for pieces, at, values in copies:
        parts += pieces
        patches.append((at + offset, values))
        offset += sum(map(len, pieces))
    parts.append(end)
    del known, copies
    graph._hold(GraphDef())
    out = bytearray().join(parts)
    del parts
    buffer = np.frombuffer(out, np.uint8)
    for at, values in patches:
        buffer[at] = values
    del buffer
    return out


def _head(size: int) -> int:
    """Bytes of a node entry's tag and length for a body of `size` bytes."""
    n = 1
    while size >= 0x80:
        size >>= 7
        n += 1
    return 1 + n
