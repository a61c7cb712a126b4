"""Towers as byte copies of a template tower: which tower-0 nodes may be copied, and the copies' devices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...ir import names
from ...naming import strip_tower, tower_prefix
from .plans import COPY, SINK
from .variables import extras_devices

if TYPE_CHECKING:
    from .build import Build

# Names that identify a run-time object and must differ between towers: a v1 while loop's frame
# (towers sharing a frame name would share one loop), and explicitly named stacks/TensorArrays.
PER_TOWER_NAME_ATTRS = ("frame_name", "stack_name", "tensor_array_name")


@dataclass
class Template:
    """A tower made from plans that the towers with as many digits copy as bytes."""

    index: int
    names: list[str]  # its nodes, in order: replicas and mirrors, then the members
    bases: frozenset[str]  # their names without the tower prefix
    extras: int  # how many replicas and mirrors
    renamed: list  # per node, the attrs whose value begins with the tower's prefix
    snapshot: object = None  # the IR's template (ir/towers.py), made once
    slots: list | None = None  # per node, what its copies' devices depend on

    @classmethod
    def of(cls, made: list, index: int, extras: int) -> Template:
        """The template of tower `index`, whose nodes `made` (its first `extras` replicas and
        mirrors) were built from the plans."""
        prefix = tower_prefix(index)
        names_ = [n.name for n in made]
        renamed = [_renamed_attrs(n, prefix) for n in made]
        return cls(index, names_, frozenset(n[len(prefix) :] for n in names_), extras, renamed)


def regular_in_tower0(b: Build, members: list[str]) -> set[str]:
    """Members whose tower-0 copy is the template's renamed: every input a copy, a constant
    name or a sink; not colocated with a replicated variable (tower 0 has the canonical one)
    or a tower-0-only node (only tower 0's copy keeps that colocation); not the colocation
    target of a node that stays parsed (placement reads its device)."""
    g, by_node, state, only0 = b.ctx.graph, b.plans.by_node, b.regions.state, b.regions.tower0_only
    sinks_ok = {
        t for t, outs in b.sinks.items() if len(outs) > 1 and strip_tower(outs[0]) == strip_tower(outs[1])
    }
    regular = set()
    copies_only: dict[int, bool] = {}  # by control entries
    for n in members:
        src, entries, controls, _ = by_node[n]
        if any(
            type(e) is not str and e[0] != COPY and not (e[0] == SINK and e[1] in sinks_ok) for e in entries
        ):
            continue
        if controls:
            ok = copies_only.get(id(controls))
            if ok is None:
                ok = copies_only[id(controls)] = all(type(e) is str or e[0] == COPY for e in controls)
            if not ok:
                continue
        if names.COLOCATION_ATTR in src.attr and any(
            t in state or t in only0 for t in names.colocation_targets(src)
        ):
            continue
        regular.add(n)
    # Colocation targets of parsed nodes, global or tower 0's own, stay parsed, transitively.
    prefix0 = tower_prefix(0)
    pinned = [t[len(prefix0) :] for name in g for t in g.colocation(name) if t.startswith(prefix0)]
    pinned += [n for n in b.regions.order if n not in regular]
    while pinned:
        n = pinned.pop()
        regular.discard(n)
        src = by_node[n].src if n in by_node else None
        if src is not None and names.COLOCATION_ATTR in src.attr:
            pinned += [t for t in names.colocation_targets(src) if t in regular]
    return regular


def clone_from_template(
    b: Build, i: int, members: list[str], t: Template, keep: list[bool] | None = None
) -> None:
    """Tower i as a copy of template tower t.index (its members where `keep`, not its
    replicas); the template has as many digits, so the renamed prefix keeps its length."""
    rw = b.ctx.rewriter
    if keep is None:
        chosen = list(range(len(t.names)))
    else:
        chosen = [t.extras + j for j, k in enumerate(keep) if k]
    if t.snapshot is None:
        t.snapshot = rw.template(t.names, t.index, tower_prefix(t.index), t.renamed)
    rw.add_copy(t.snapshot, i, tower_prefix(i), chosen, _copy_devices(b, i, t, members, chosen))


def _copy_devices(b: Build, i: int, t: Template, members: list[str], chosen: list[int]) -> list[str]:
    """Where tower i's copies of template t's nodes `chosen` run: by the same rules as the
    template's, except that a template node a later pass moved (to its variable's parameter
    server, say: a place shared by the towers) takes its copies along."""
    devs = b.devices
    if t.slots is None:
        extras = extras_devices(devs, b.replicas, b.mirrors, t.index) if b.replicated else []
        kinds = [None] * len(extras) + [b.plans.by_node[n].kind for n in members]
        planned = extras + [devs.device(kind, t.index) for kind in kinds[len(extras) :]]
        now = t.snapshot.devices
        # A slot: the device itself (moved, or a replica/mirror: computed per tower), or
        # the placement kind, whose device per tower is looked up once per distinct kind.
        one_type = len(set(devs.types.values())) == 1
        t.slots = [
            now[j] if now[j] != planned[j] else devs.slot(kinds[j], one_type) for j in range(len(kinds))
        ]
    extras = extras_devices(devs, b.replicas, b.mirrors, i) if i > 0 and b.replicated else []
    table: dict = {}
    out = []
    for j in chosen:
        slot = t.slots[j]
        if slot is None:
            out.append(extras[j])
        elif type(slot) is str:
            out.append(slot)
        else:
            key = slot if slot[0] != "tower" else id(slot[1])  # a NodeDef does not hash
            dev = table.get(key)
            if dev is None:
                dev = table[key] = devs.device(slot, i)
            out.append(dev)
    return out


def _renamed_attrs(node, prefix: str) -> tuple[str, ...]:
    """The attrs of a tower copy that the rewrite began with its tower's prefix: loop frame,
    stack and TensorArray names, and a replica's shared name."""
    keys = [k for k in (*PER_TOWER_NAME_ATTRS, "shared_name") if k in node.attr and node.attr[k].s]
    return tuple(k for k in keys if node.attr[k].s.startswith(prefix.encode()))
