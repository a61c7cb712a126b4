"""What a rewrite records about itself in its output (one NoOp with an attr TensorFlow ignores): the
towers' devices, the mode, and the names that look like a tower's but are not; read back by
inspect, execution and dot, so a scope the input called `tower3` is just a name, and found by
the rewrite itself to refuse its own output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tensorflow.core.framework.attr_value_pb2 import AttrValue

from . import naming

ATTR = "_graphpass_manifest"  # internal attrs (a leading "_") are allowed on any op
VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """`towers`: the device of each tower, by index; `foreign`: names in the output that parse as
    a tower's (`tower{i}/...`) but came with the input, so belong to none; `split` and
    `broadcast`: the inputs the towers read a shard of, and those each reads whole."""

    towers: tuple[str, ...]
    mode: str
    foreign: frozenset[str]
    split: tuple[str, ...] = ()
    broadcast: tuple[str, ...] = ()

    def tower_of(self, name: str) -> tuple[int, str] | None:
        """(index, base) of a node of a tower, else None."""
        if name in self.foreign:
            return None
        found = naming.parse_tower(name)
        return found if found is not None and found[0] < len(self.towers) else None

    def encode(self) -> bytes:
        body = {
            "version": VERSION,
            "towers": list(self.towers),
            "mode": self.mode,
            "foreign": sorted(self.foreign),
            "split": list(self.split),
            "broadcast": list(self.broadcast),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest | None:
        """The manifest in `data`, or None if it is not one this version reads."""
        try:
            body = json.loads(data)
            if body.get("version") != VERSION:
                return None
            return cls(
                tuple(map(str, body["towers"])),
                str(body["mode"]),
                frozenset(map(str, body["foreign"])),
                tuple(map(str, body.get("split", ()))),
                tuple(map(str, body.get("broadcast", ()))),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def lookalikes(names: Iterable[str]) -> list[str]:
    """The names among `names` (the input's) that parse as a tower's."""
    return [n for n in names if naming.TOWER_PATTERN.match(n)]


def record(ctx, lookalike: Iterable[str]) -> None:
    """Add the manifest of `ctx`'s rewrite; `lookalike`: the input's names that parse as a tower's
    (those still in the graph came with the input)."""
    g, rw = ctx.graph, ctx.rewriter
    m = Manifest(
        tuple(ctx.devices),
        ctx.mode,
        frozenset(n for n in lookalike if n in g),
        tuple(ctx.batch.split),
        tuple(ctx.batch.broadcast),
    )
    rw.add(
        rw.unique_name(naming.MANIFEST), "NoOp", attrs={ATTR: AttrValue(s=m.encode())}, device=ctx.devices[0]
    )


def find(nodes: Iterable):
    """The manifest node among `nodes` (NodeDefs), found by its attr, or None."""
    return next((node for node in nodes if is_manifest(node)), None)


def read(graph_def) -> Manifest | None:
    """The manifest graphpass wrote into `graph_def`, or None (none, or another version's)."""
    node = find(graph_def.node)
    return None if node is None else Manifest.decode(node.attr[ATTR].s)


def is_manifest(node) -> bool:
    return ATTR in node.attr


def tower_reader(graph_def) -> Callable[[str], tuple[int, str] | None]:
    """Which tower a node of `graph_def` belongs to: from its manifest, or for a graph from
    elsewhere (or an older graphpass) from its name."""
    m = read(graph_def)
    return m.tower_of if m is not None else naming.parse_tower
