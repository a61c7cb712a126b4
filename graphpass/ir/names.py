"""Tensor and node references: "n", "n:1", "^n", colocation "loc:@n", and scope prefixes."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import NamedTuple

from ..naming import tower_name  # noqa: F401 - re-exported; the naming schema lives in graphpass/naming.py


class Ref(NamedTuple):
    """One entry of a NodeDef's input list, parsed."""

    node: str
    index: int
    control: bool

    def __str__(self) -> str:
        if self.control:
            return "^" + self.node
        return self.node if self.index == 0 else f"{self.node}:{self.index}"


def parse(ref: str) -> Ref:
    """Parse an input string: "n" -> (n, 0), "n:2" -> (n, 2), "^n" -> control edge on n."""
    if ref[:1] == "^":
        return Ref(ref[1:], -1, True)
    node, sep, idx = ref.rpartition(":")
    if sep and idx.isascii() and idx.isdigit():
        return Ref(node, int(idx), False)
    return Ref(ref, 0, False)


def node_of(ref: str) -> str:
    """The node name an input string refers to."""
    if ref[:1] == "^":
        return ref[1:]
    i = ref.rfind(":")
    if i < 0:
        return ref
    idx = ref[i + 1 :]
    return ref[:i] if idx.isascii() and idx.isdigit() else ref


class Memo(dict):
    """`fn` of each key, computed once: `map(memo.__getitem__, keys)` runs in C for keys seen
    before (a graph's inputs repeat: ResNet-50's 93k inputs are 7k distinct strings)."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def __missing__(self, key):
        value = self[key] = self._fn(key)
        return value


def is_control(ref: str) -> bool:
    return ref[:1] == "^"


def all_control(refs: Iterable[str]) -> bool:
    """Whether every one of `refs` is a control input (checked in C)."""
    return all(map(str.startswith, refs, repeat("^")))


def tensor(node: str, index: int = 0) -> str:
    """The canonical input string for output `index` of `node`."""
    return node if index == 0 else f"{node}:{index}"


def control(node: str) -> str:
    return "^" + node


COLOCATION_ATTR = "_class"
COLOCATION_PREFIX = b"loc:@"


def colocation_targets(node) -> list[str]:
    """Names of the nodes `node` is colocated with through its `_class` attribute."""
    attr = node.attr.get(COLOCATION_ATTR)
    if attr is None:
        return []
    return [
        s[len(COLOCATION_PREFIX) :].decode("utf-8", "replace")
        for s in attr.list.s
        if s.startswith(COLOCATION_PREFIX)
    ]


def set_colocation(node, targets: list[str]) -> None:
    """Replace `node`'s colocation list; other `_class` entries are kept."""
    attr = node.attr[COLOCATION_ATTR]
    others = [s for s in attr.list.s if not s.startswith(COLOCATION_PREFIX)]
    del attr.list.s[:]
    attr.list.s.extend(others + [COLOCATION_PREFIX + t.encode() for t in targets])
    if not attr.list.s:
        del node.attr[COLOCATION_ATTR]
