"""The result of a graph diff (GraphDiff and its node records) and its rendering as text."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

COLLAPSE_AT = 5  # a scope with this many added (or removed) nodes is one line unless expanded
NAMES_SHOWN = 3  # nodes with identical changes: names listed before "+N more"
CHANGES_PER_NODE = 8  # field changes shown per node unless expanded
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


def natural_key(name: str) -> tuple:
    """Sort key putting tower2 before tower10 (ties broken by the plain string)."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name)), name


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
