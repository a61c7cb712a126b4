"""Diffing two GraphDefs: nodes matched by name, field-level changes of each node, graph-level lines.

The result and its text live in diff_report, attribute values in diff_values; both re-exported here.
"""

from __future__ import annotations

import difflib
import os

from google.protobuf import text_format
from tensorflow.core.framework import graph_pb2

from .diff_report import (
    CHANGES_PER_NODE,
    COLLAPSE_AT,
    NAMES_SHOWN,
    GraphDiff,
    NodeChange,
    NodeInfo,
    natural_key,
)
from .diff_values import (
    SMALL_TENSOR,
    VALUE_CHARS,
    attr_text,
    cut,
    cut_pair,
    format_attr,
    format_shape,
    format_tensor,
)
from .errors import InvalidGraphError
from .ir import names

__all__ = [
    "CHANGES_PER_NODE",
    "COLLAPSE_AT",
    "KNOWN_NODE_FIELDS",
    "NAMES_SHOWN",
    "SMALL_TENSOR",
    "VALUE_CHARS",
    "GraphDef",
    "GraphDiff",
    "NodeChange",
    "NodeInfo",
    "diff_files",
    "diff_graphs",
    "diff_pbtxt",
    "format_attr",
    "format_shape",
    "format_tensor",
    "natural_key",
    "node_changes",
]

GraphDef = graph_pb2.GraphDef

KNOWN_NODE_FIELDS = ("name", "op", "input", "device", "attr")


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
            before, after = attr_text(a.attr[key]), attr_text(b.attr[key])
            if before == after:
                lines.append(f"attr {key}: {cut(before)} (same value, different encoding)")
            else:
                before, after = cut_pair(before, after)
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
            before, after = cut_pair(_list_str(data_a), _list_str(data_b))
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
        before, after = cut_pair(_list_str(a), _list_str(b))
        lines.append(f"inputs: {before} -> {after}")
    return lines


def _list_str(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


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
            parts.append(f"{sign}{len(group)} {cut(', '.join(group), 40)}")
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
