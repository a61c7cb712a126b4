"""The output naming schema: how graphpass names what it adds (towers, reductions, packs), formatted
and parsed back here only, so dot, inspect, execution and verify read the names as the passes wrote them."""

from __future__ import annotations

import re

TOWER_PATTERN = re.compile(r"^tower(\d+)/")
ALLREDUCE = "allreduce"
REDUCED = "reduced_grads"
PACKS = "grad_packs"
MANIFEST = "graphpass_manifest"  # the node recording the rewrite (manifest.py)


def tower_prefix(index: int) -> str:
    """The scope of tower `index`'s copies: `tower{index}/`."""
    return f"tower{index}/"


def tower_name(index: int, name: str) -> str:
    """The name of tower `index`'s copy of `name`."""
    return f"tower{index}/{name}"


def parse_tower(name: str) -> tuple[int, str] | None:
    """(index, name without the tower scope) of a name under `tower{i}/`, else None."""
    m = TOWER_PATTERN.match(name)
    return (int(m.group(1)), name[m.end() :]) if m else None


def strip_tower(name: str) -> str:
    """`name` without a leading `tower{i}/` scope."""
    return TOWER_PATTERN.sub("", name, count=1)


def allreduce_scope(key: str, tower: int | None = None) -> str:
    """The scope of one reduction's nodes: `[tower{i}/]allreduce/<key>`."""
    base = f"{ALLREDUCE}/{key}"
    return base if tower is None else tower_name(tower, base)


def pack_scope(pack: int, tower: int | None = None) -> str:
    """The scope of one gradient pack's nodes: `[tower{i}/]grad_packs/pack{pack}`."""
    base = f"{PACKS}/pack{pack}"
    return base if tower is None else tower_name(tower, base)


def reduced_scope(key: str) -> str:
    """The scope of a reduced gradient's global nodes: `reduced_grads/<key>`."""
    return f"{REDUCED}/{key}"


def allreduce_path(name: str) -> str | None:
    """What follows `[tower{i}/]allreduce/` in a node's name, else None."""
    rest = strip_tower(name)
    return rest[len(ALLREDUCE) + 1 :] if rest.startswith(ALLREDUCE + "/") else None


def allreduce_key(name: str) -> str | None:
    """The key of the reduction a node `[tower{i}/]allreduce/<key>/...` belongs to, else None."""
    path = allreduce_path(name)
    return None if path is None else path.rsplit("/", 1)[0].split("/densify")[0]


def reduced_key(name: str) -> str | None:
    """The key of a node under `[tower{i}/]reduced_grads/`, else None."""
    rest = strip_tower(name)
    return rest[len(REDUCED) + 1 :] if rest.startswith(REDUCED + "/") else None


def pack_of(name: str) -> str | None:
    """The pack (`pack{g}`) a node under `[tower{i}/]grad_packs/` belongs to, else None."""
    rest = strip_tower(name)
    if not rest.startswith(PACKS + "/"):
        return None
    return rest[len(PACKS) + 1 :].split("/", 1)[0]
