"""A readable, deterministic diff of two GraphDefs: nodes added, removed and changed, grouped by scope."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf import text_format
from tensorflow.core.framework import attr_value_pb2, graph_pb2, types_pb2

from .errors import InvalidGraphError
from .ir import names

GraphDef = graph_pb2.GraphDef

VALUE_CHARS = 60  # an attribute value longer than this is cut with "..."
SMALL_TENSOR = 8  # tensors with at most this many elements show their values
COLLAPSE_AT = 5  # a scope with this many added (or removed) nodes is one line unless expanded
NAMES_SHOWN = 3  # nodes with identical changes: names listed before "+N more"
CHANGES_PER_NODE = 8  # field changes shown per node unless expanded
KNOWN_NODE_FIELDS = ("name", "op", "input", "device", "attr")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class NodeInfo:
    """An added or removed node: enough to say what it was."""

    name: str
    op: str
    device: str


@dataclass(frozen=True)
class NodeChange:
    """A node present in both graphs whose NodeDef differs; `changes` are one rendered line each."""

    name: str
    op: str
    changes: tuple[str, ...]


@dataclass
class GraphDiff:
    """The differences between graph A and graph B; `render()` makes the text."""

    a_label: str
    b_label: str
    a_nodes: int
    b_nodes: int
    added: list[NodeInfo] = field(default_factory=list)
    removed: list[NodeInfo] = field(default_factory=list)
    changed: list[NodeChange] = field(default_factory=list)
    graph_lines: list[str] = field(default_factory=list)  # library, versions, node order, other fields

    @property
    def identical(self) -> bool:
        """True when nothing differs (the GraphDefs are equal, node order included)."""
        return not (self.added or self.removed or self.changed or self.graph_lines)

    def summary(self) -> str:
        """The header line, e.g. "A -> B: +120 nodes, -3 nodes, 14 changed (101 -> 218 nodes)"."""
        head = f"{self.a_label} -> {self.b_label}:"
        if self.identical:
            return f"{head} graphs are identical ({self.a_nodes} nodes)"
        parts = [f"+{len(self.added)} nodes", f"-{len(self.removed)} nodes", f"{len(self.changed)} changed"]
        if not (self.added or self.removed or self.changed):
            parts = ["no node differs"]
        return f"{head} {', '.join(parts)} ({self.a_nodes} -> {self.b_nodes} nodes)"

    def render(self, max_lines: int | None = None, expand: bool = False) -> str:
        """The diff as text: the summary line, then graph-level lines, removed, added and changed nodes.

        Args:
            max_lines: keep at most this many lines (at least 2), the last saying how many were
                left out. None keeps every line.
            expand: list every added/removed node instead of one line per crowded scope, every node
                with identical changes on its own, and every field change of a node.
        Returns:
            The text, lines joined by newlines, no trailing newline; the same for the same graphs.
        """
        lines = [self.summary()]
        lines += [f"  {line}" for line in self.graph_lines]
        if self.removed:
            lines.append(f"removed ({len(self.removed)}):")
            lines += _node_lines("-", self.removed, expand)
        if self.added:
            lines.append(f"added ({len(self.added)}):")
            lines += _node_lines("+", self.added, expand)
        if self.changed:
            lines.append(f"changed ({len(self.changed)}):")
            lines += _change_lines(self.changed, expand)
        if max_lines is not None and len(lines) > max_lines:
            keep = max(max_lines, 2) - 1
            left = len(lines) - keep
            lines = lines[:keep] + [f"... {left} more lines"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def diff_graphs(a: GraphDef, b: GraphDef, a_label: str = "A", b_label: str = "B") -> GraphDiff:
    """Compare two GraphDefs node by node (by name).

    Args:
        a: the graph before (or the expected one).
        b: the graph after (or the one obtained).
        a_label: what to call `a` in the summary line (a path, "golden").
        b_label: what to call `b`.
    Returns:
        A GraphDiff: added, removed and changed nodes in sorted order, plus one line each for
        library, versions, node order and other GraphDef fields where they differ.
    Raises:
        InvalidGraphError: a graph has two nodes with the same name.
    """
    nodes_a = _by_name(a, a_label)
    nodes_b = _by_name(b, b_label)
    out = GraphDiff(a_label, b_label, len(nodes_a), len(nodes_b))
    for name in sorted(nodes_a.keys() - nodes_b.keys(), key=natural_key):
        out.removed.append(_info(nodes_a[name]))
    for name in sorted(nodes_b.keys() - nodes_a.keys(), key=natural_key):
        out.added.append(_info(nodes_b[name]))
    for name in sorted(nodes_a.keys() & nodes_b.keys(), key=natural_key):
        na, nb = nodes_a[name], nodes_b[name]
        if na == nb:
            continue
        changes = node_changes(na, nb)
        out.changed.append(NodeChange(name, nb.op, tuple(changes)))
    out.graph_lines = _graph_lines(a, b, nodes_a, nodes_b)
    return out


def diff_files(path_a: str | os.PathLike, path_b: str | os.PathLike) -> GraphDiff:
    """Load two graph files (.pb, .pbtxt, .meta) and diff them, labelled by their paths.

    Raises:
        InvalidGraphError: a file is missing or not a GraphDef, or has duplicate node names.
    """
    from .io import load_graph

    return diff_graphs(load_graph(path_a), load_graph(path_b), str(path_a), str(path_b))


def diff_pbtxt(a_text: str, b_text: str, a_label: str = "A", b_label: str = "B") -> GraphDiff:
    """Diff two text-format GraphDefs (a golden .pbtxt and a fresh rewrite's text, say).

    Raises:
        InvalidGraphError: a text is not a text-format GraphDef, or has duplicate node names.
    """
    graphs = []
    for label, text in ((a_label, a_text), (b_label, b_text)):
        graph = GraphDef()
        try:
            text_format.Parse(text, graph)
        except text_format.ParseError as e:
            raise InvalidGraphError(f"{label} is not a text GraphDef: {str(e).splitlines()[0]}") from None
        graphs.append(graph)
    return diff_graphs(graphs[0], graphs[1], a_label, b_label)


def natural_key(name: str) -> tuple:
    """Sort key putting tower2 before tower10 (ties broken by the plain string)."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name)), name


# -- nodes ---------------------------------------------------------------------------------


def _by_name(graph: GraphDef, label: str) -> dict:
    out = {}
    for node in graph.node:
        if node.name in out:
            raise InvalidGraphError(f"{label} has two nodes named '{node.name}'")
        out[node.name] = node
    return out


def _info(node) -> NodeInfo:
    return NodeInfo(node.name, node.op, node.device)


def node_changes(a, b) -> list[str]:
    """The field-level differences of two NodeDefs with the same name, one line each.

    Args:
        a: the NodeDef before.
        b: the NodeDef after.
    Returns:
        Lines such as "op: MatMul -> BatchMatMulV2", "input 1: x -> x/split:1", "control +^init",
        "device: /device:CPU:0 -> /device:CPU:1", "attr N: 2 -> 3", "attr +_class: [...]";
        empty when the nodes are equal.
    """
    lines: list[str] = []
    if a.op != b.op:
        lines.append(f"op: {a.op} -> {b.op}")
    lines += _input_changes(list(a.input), list(b.input))
    if a.device != b.device:
        lines.append(f"device: {a.device or '(none)'} -> {b.device or '(none)'}")
    for key in sorted(set(a.attr) | set(b.attr)):
        if key not in b.attr:
            lines.append(f"attr -{key}: {format_attr(a.attr[key])}")
        elif key not in a.attr:
            lines.append(f"attr +{key}: {format_attr(b.attr[key])}")
        elif a.attr[key] != b.attr[key]:
            before, after = _attr_text(a.attr[key]), _attr_text(b.attr[key])
            if before == after:
                lines.append(f"attr {key}: {_cut(before)} (same value, different encoding)")
            else:
                before, after = _cut_pair(before, after)
                lines.append(f"attr {key}: {before} -> {after}")
    other = [f.name for f in a.DESCRIPTOR.fields if f.name not in KNOWN_NODE_FIELDS]
    differing = [f for f in other if getattr(a, f) != getattr(b, f)]
    if differing:
        lines.append(f"other fields differ: {', '.join(differing)}")
    if not lines and a != b:
        lines.append("NodeDefs differ in unknown fields")
    return lines


def _input_changes(a: list[str], b: list[str]) -> list[str]:
    if a == b:
        return []
    data_a = [r for r in a if not names.is_control(r)]
    data_b = [r for r in b if not names.is_control(r)]
    ctrl_a = [names.node_of(r) for r in a if names.is_control(r)]
    ctrl_b = [names.node_of(r) for r in b if names.is_control(r)]
    lines: list[str] = []
    if data_a != data_b:
        if sorted(data_a) == sorted(data_b):
            before, after = _cut_pair(_list_str(data_a), _list_str(data_b))
            lines.append(f"inputs reordered: {before} -> {after}")
        else:
            matcher = difflib.SequenceMatcher(a=data_a, b=data_b, autojunk=False)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes():
                if tag == "equal":
                    continue
                if tag == "replace" and i2 - i1 == j2 - j1:
                    for k in range(i2 - i1):
                        lines.append(f"input {i1 + k}: {data_a[i1 + k]} -> {data_b[j1 + k]}")
                    continue
                lines += [f"input -{k}: {data_a[k]}" for k in range(i1, i2)]
                lines += [f"input +{k}: {data_b[k]}" for k in range(j1, j2)]
    if ctrl_a != ctrl_b:
        set_a, set_b = set(ctrl_a), set(ctrl_b)
        lines += [f"control -^{n}" for n in sorted(set_a - set_b)]
        lines += [f"control +^{n}" for n in sorted(set_b - set_a)]
        if set_a == set_b:
            same = sorted(ctrl_a) == sorted(ctrl_b)
            lines.append("control inputs reordered" if same else "control inputs repeated differently")
    if not lines:  # the same data and control inputs, interleaved differently
        before, after = _cut_pair(_list_str(a), _list_str(b))
        lines.append(f"inputs: {before} -> {after}")
    return lines


def _list_str(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _node_lines(sign: str, nodes: list[NodeInfo], expand: bool) -> list[str]:
    """One line per node, or per first-level scope holding COLLAPSE_AT nodes or more."""
    groups: dict[str, list[NodeInfo]] = {}
    for node in nodes:
        head, sep, _ = node.name.partition("/")
        groups.setdefault(head + sep if sep else node.name, []).append(node)
    lines = []
    for scope in sorted(groups, key=natural_key):
        members = groups[scope]
        if expand or len(members) < COLLAPSE_AT or not scope.endswith("/"):
            lines += [f"  {sign} {n.name} ({_where(n)})" for n in members]
            continue
        lines.append(f"  {sign} {scope}...  {len(members)} nodes {_devices(members)}({_op_counts(members)})")
    return lines


def _where(node: NodeInfo) -> str:
    return f"{node.op} on {node.device}" if node.device else node.op


def _devices(nodes: Iterable[NodeInfo]) -> str:
    devices = sorted({n.device for n in nodes if n.device})
    if not devices:
        return ""
    if len(devices) <= 2:
        return f"on {', '.join(devices)} "
    return f"on {len(devices)} devices "


def _op_counts(nodes: Iterable[NodeInfo], shown: int = 4) -> str:
    counts = Counter(n.op for n in nodes)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{count} {op}" for op, count in ranked[:shown])
    if len(ranked) > shown:
        text += f", +{len(ranked) - shown} op types"
    return text


def _change_lines(changed: list[NodeChange], expand: bool) -> list[str]:
    """Changed nodes; unless expanded, nodes with the same op and the same changes share one entry."""
    groups: dict[tuple, list[str]] = {}
    for change in changed:
        key = (change.op, change.changes) if not expand else (change.op, change.changes, change.name)
        groups.setdefault(key, []).append(change.name)
    lines = []
    for key in sorted(groups, key=lambda k: natural_key(groups[k][0])):
        op, changes = key[0], key[1]
        members = groups[key]
        shown = ", ".join(members[:NAMES_SHOWN])
        if len(members) > NAMES_SHOWN:
            shown += f" (+{len(members) - NAMES_SHOWN} more with the same changes)"
        lines.append(f"  ~ {shown} ({op})")
        limit = len(changes) if expand else CHANGES_PER_NODE
        lines += [f"      {c}" for c in changes[:limit]]
        if len(changes) > limit:
            lines.append(f"      ... {len(changes) - limit} more changes")
    return lines


# -- attribute values ----------------------------------------------------------------------


def format_attr(value: attr_value_pb2.AttrValue) -> str:
    """A short, deterministic text for an AttrValue: DT_FLOAT, [2,3], "str", DT_INT32[] 2, [a, b].

    Args:
        value: the AttrValue.
    Returns:
        The text, cut to about VALUE_CHARS characters with "...".
    """
    return _cut(_attr_text(value))


def _attr_text(value: attr_value_pb2.AttrValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return "(empty)"
    if kind == "s":
        return _bytes_text(value.s)
    if kind == "i":
        return str(value.i)
    if kind == "f":
        return _float_text(value.f)
    if kind == "b":
        return "true" if value.b else "false"
    if kind == "type":
        return _type_name(value.type)
    if kind == "shape":
        return format_shape(value.shape)
    if kind == "tensor":
        return format_tensor(value.tensor)
    if kind == "func":
        return _func_text(value.func)
    if kind == "placeholder":
        return f"${value.placeholder}"
    return _list_text(value.list)


def _list_text(lst: attr_value_pb2.AttrValue.ListValue) -> str:
    items: list[str] = []
    items += [_bytes_text(s) for s in lst.s]
    items += [str(i) for i in lst.i]
    items += [_float_text(f) for f in lst.f]
    items += ["true" if b else "false" for b in lst.b]
    items += [_type_name(t) for t in lst.type]
    items += [format_shape(s) for s in lst.shape]
    items += [format_tensor(t) for t in lst.tensor]
    items += [_func_text(f) for f in lst.func]
    return "[" + ", ".join(items) + "]"


def _bytes_text(data: bytes) -> str:
    return '"' + data.decode("utf-8", "backslashreplace").replace('"', '\\"') + '"'


def _float_text(value: float) -> str:
    import numpy as np

    return str(np.float32(value))


def _type_name(dtype: int) -> str:
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DT_{dtype}"


def _func_text(func) -> str:
    if not func.attr:
        return func.name
    inner = ", ".join(f"{k}={_attr_text(func.attr[k])}" for k in sorted(func.attr))
    return f"{func.name}{{{inner}}}"


def format_shape(shape) -> str:
    """A TensorShapeProto as [2,3] ([] a scalar, ? an unknown dimension, <unknown> unknown rank)."""
    if shape.unknown_rank:
        return "<unknown>"
    return "[" + ",".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def format_tensor(tensor) -> str:
    """A TensorProto as DT_INT32[] 2, DT_FLOAT[2] [0.5, 1], or DT_FLOAT[784,10] <7840 values sha1:...>."""
    head = f"{_type_name(tensor.dtype)}{format_shape(tensor.tensor_shape)}"
    size = 1
    for d in tensor.tensor_shape.dim:
        size *= max(d.size, 0)
    try:
        from tensorflow.python.framework import tensor_util

        array = tensor_util.MakeNdarray(tensor)
    except Exception:  # noqa: BLE001 - an undecodable tensor is shown by its digest
        array = None
    if array is not None and size <= SMALL_TENSOR:
        values = [_scalar_text(v) for v in array.flat]
        if not tensor.tensor_shape.dim:
            return f"{head} {values[0]}" if values else head
        return f"{head} [{', '.join(values)}]"
    data = (
        array.tobytes()
        if array is not None and array.dtype != object
        else tensor.SerializeToString(deterministic=True)
    )
    digest = hashlib.sha1(data).hexdigest()[:8]
    return f"{head} <{size} values sha1:{digest}>"


def _scalar_text(value) -> str:
    if isinstance(value, bytes):
        return _bytes_text(value)
    return str(value)


def _cut(text: str, limit: int = VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut_pair(a: str, b: str, limit: int = VALUE_CHARS) -> tuple[str, str]:
    """Cut two different long values so that the place where they first differ stays visible."""
    if _cut(a, limit) != _cut(b, limit):
        return _cut(a, limit), _cut(b, limit)
    common = len(os.path.commonprefix([a, b]))
    start = max(common - limit // 3, 0)
    return (_cut("..." + a[start:], limit), _cut("..." + b[start:], limit))


# -- the graph as a whole ------------------------------------------------------------------


def _graph_lines(a: GraphDef, b: GraphDef, nodes_a: dict, nodes_b: dict) -> list[str]:
    lines = []
    if a.library != b.library:
        lines.append(_library_line(a.library, b.library))
    if a.versions != b.versions:
        lines.append(_versions_line(a.versions, b.versions))
    order = _order_line(a, b, nodes_a, nodes_b)
    if order:
        lines.append(order)
    other = [f.name for f in a.DESCRIPTOR.fields if f.name not in ("node", "library", "versions")]
    differing = [f for f in other if getattr(a, f) != getattr(b, f)]
    if differing:
        lines.append(f"other GraphDef fields differ: {', '.join(differing)}")
    return lines


def _library_line(a, b) -> str:
    funcs_a = {f.signature.name: f for f in a.function}
    funcs_b = {f.signature.name: f for f in b.function}
    added = sorted(funcs_b.keys() - funcs_a.keys())
    removed = sorted(funcs_a.keys() - funcs_b.keys())
    changed = sorted(n for n in funcs_a.keys() & funcs_b.keys() if funcs_a[n] != funcs_b[n])
    parts = []
    for sign, group in (("+", added), ("-", removed), ("~", changed)):
        if group:
            parts.append(f"{sign}{len(group)} {_cut(', '.join(group), 40)}")
    rest = [f.name for f in a.DESCRIPTOR.fields if f.name != "function"]
    parts += [f"{f} differ" for f in rest if getattr(a, f) != getattr(b, f)]
    return f"library: functions {len(funcs_a)} -> {len(funcs_b)}; " + "; ".join(parts)


def _versions_line(a, b) -> str:
    parts = []
    for f in ("producer", "min_consumer"):
        if getattr(a, f) != getattr(b, f):
            parts.append(f"{f} {getattr(a, f)} -> {getattr(b, f)}")
    if list(a.bad_consumers) != list(b.bad_consumers):
        parts.append(f"bad_consumers {list(a.bad_consumers)} -> {list(b.bad_consumers)}")
    return "versions: " + ("; ".join(parts) or "differ")


def _order_line(a: GraphDef, b: GraphDef, nodes_a: dict, nodes_b: dict) -> str | None:
    common_a = [n.name for n in a.node if n.name in nodes_b]
    common_b = [n.name for n in b.node if n.name in nodes_a]
    if common_a == common_b:
        return None
    first = next(i for i, (x, y) in enumerate(zip(common_a, common_b, strict=True)) if x != y)
    return (
        f"node order: the {len(common_a)} common nodes are in another order "
        f"(first at {first}: '{common_a[first]}' vs '{common_b[first]}')"
    )
