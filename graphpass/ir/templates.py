"""Copies of a group of nodes made from their serialized bytes: a template serialized once without
devices, then per copy length-preserving renames (protobuf's framing stays valid) and each node's
device spliced in. Nothing is parsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InternalError
from .graph import NODE_TAG, NodeDef, varint

INPUT_TAG = b"\x1a"  # NodeDef.input: field 3, length-delimited
DEVICE_TAG = b"\x22"  # NodeDef.device: field 4, length-delimited
AFTER_DEVICE = frozenset(b"\x2a\x32\x3a")  # attr, experimental_debug_info, experimental_type


@dataclass(frozen=True)
class Template:
    """Serialized NodeDefs without devices; per node, where its bytes start, where its device
    field goes (fields are written in number order: name, op, inputs, device, attrs, ...) and
    where it ends."""

    data: bytes
    spans: list[tuple[int, int, int]]


def _field(tag: bytes, text: str) -> bytes:
    data = text.encode()
    return tag + varint(len(data)) + data


def input_field(ref: str) -> bytes:
    """How `ref` is encoded as one NodeDef input entry."""
    return _field(INPUT_TAG, ref)


def template(nodes: Sequence[NodeDef]) -> Template:
    """`nodes` serialized (deterministic) without their devices; the nodes are left as they were."""
    data = bytearray()
    spans = []
    for node in nodes:
        device = node.device
        node.device = ""
        body = node.SerializeToString(deterministic=True)
        node.device = device
        split = len(_field(b"\x0a", node.name)) + len(_field(b"\x12", node.op) if node.op else b"")
        split += sum(len(_field(INPUT_TAG, ref)) for ref in node.input)
        if split < len(body) and body[split] not in AFTER_DEVICE:
            raise InternalError(f"node '{node.name}' does not serialize in field order")
        data += NODE_TAG + varint(len(body))
        spans.append((len(data), len(data) + split, len(data) + len(body)))
        data += body
    return Template(bytes(data), spans)


def copy(t: Template, renames: list[tuple[bytes, bytes]], devices: Sequence[str]) -> bytes:
    """The template's nodes with each (old, new) byte string replaced and node j on `devices[j]`.

    The caller guarantees that the old strings occur only where meant (graphpass renames only
    strings of its own making, in graphs that contain none like them).

    Raises:
        InternalError: a rename changes a length, or `devices` does not fit the template.
    """
    data = t.data
    for old, new in renames:
        if len(old) != len(new):
            raise InternalError(f"template rename {old!r} -> {new!r} changes the length")
        data = data.replace(old, new)
    if len(devices) != len(t.spans):
        raise InternalError(f"{len(devices)} devices for a template of {len(t.spans)} nodes")
    view = memoryview(data)
    fields: dict[str, bytes] = {}
    parts: list = []
    for (start, split, end), device in zip(t.spans, devices, strict=True):
        field = fields.get(device)
        if field is None:
            field = fields[device] = _field(DEVICE_TAG, device) if device else b""
        parts.append(NODE_TAG + varint(end - start + len(field)))
        parts.append(view[start:split])
        parts.append(field)
        parts.append(view[split:end])
    return b"".join(parts)
