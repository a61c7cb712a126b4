"""The tower copies: the build state, and every tower made from the plans or from a template's bytes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ... import opdefs
from ...context import RewriteContext
from ...ir import names
from ...naming import tower_name, tower_prefix
from . import templates
from .devices import Devices
from .nodes import check_free, mean_of
from .plans import ALL, COPY, SINK, STATE, Plans
from .reductions import Sinks
from .regions import Regions
from .templates import PER_TOWER_NAME_ATTRS
from .variables import Mirror, tower_extras

OUTPUT_SHAPES = "_output_shapes"


@dataclass
class Build:
    """Building the towers: what the stages decided, and what the build has made so far."""

    ctx: RewriteContext
    regions: Regions
    devices: Devices
    plans: Plans
    sinks: Sinks
    replicas: tuple[str, ...]  # replicated variables (none in parameter-server mode)
    mirrors: tuple[Mirror, ...]
    replicated: bool
    cloned: set[str] = field(default_factory=set)  # the copies, on their devices (settle leaves them)
    tower_means: dict[str, str] = field(default_factory=dict)  # by tensor, built once


def clone_towers(b: Build, copy_towers: bool) -> frozenset[str]:
    """Copy the region once per tower. Through the plans: a template tower per digit count
    (tower 1, tower 10 from K = 11, ...) and the part of tower 0 that reads differently
    (canonical variables, tower-0-only work). Every other tower, and the rest of tower 0,
    when `copy_towers` is set: as renamed bytes of the template. Returns the copies' names."""
    ctx, regions, k = b.ctx, b.regions, b.ctx.num_towers
    order = list(regions.order)
    members = [n for n in order if n not in regions.tower0_only]
    if not copy_towers or k == 1:
        for i in range(k):
            ctx.progress.update("replicate: tower", i, k)
            extras = _extras(b, i) if i > 0 and b.replicated else []
            clone_with_plans(b, i, order if i == 0 else members, extras)
        return frozenset(b.cloned)
    regular = templates.regular_in_tower0(b, members)
    clone_with_plans(b, 0, [n for n in order if n not in regular], [])
    made: dict[int, templates.Template] = {}
    for i in (10**d for d in range(len(str(k - 1)))):  # 1, 10, 100, ... below K
        if i < k:
            extras = _extras(b, i) if b.replicated else []
            made[len(str(i))] = templates.Template.of(clone_with_plans(b, i, members, extras), i, len(extras))
    for i in range(k):
        ctx.progress.update("replicate: tower", i, k)
        if i == 0:
            templates.clone_from_template(b, 0, members, made[1], keep=[n in regular for n in members])
        elif made[len(str(i))].index != i:
            templates.clone_from_template(b, i, members, made[len(str(i))])
    return frozenset(b.cloned)


def _extras(b: Build, i: int) -> list:
    return tower_extras(b.ctx, b.devices, b.replicas, b.mirrors, i)


def clone_with_plans(b: Build, i: int, members: list[str], extras: list) -> list:
    """Tower i's replicas and mirrors (`extras`, made already) and its copies of `members`."""
    g, rw, regions, devs = b.ctx.graph, b.ctx.rewriter, b.regions, b.devices
    region, replicas, by_node = regions.region, b.ctx.replicas, b.plans.by_node
    prefix = tower_prefix(i)
    copy_kind = COPY
    out = list(extras)
    written: list = [None] * len(extras)
    rendered: dict[int, tuple[list[str], tuple[str, ...]]] = {}  # by control entries
    for n in members:
        src, entries, controls, kind = by_node[n]
        name = prefix + n
        check_free(g, name)
        node = g.new_node()
        node.CopyFrom(src)
        node.name = name
        del node.input[:]
        refs = [
            e if type(e) is str else e[1] + prefix + e[2] if e[0] == copy_kind else render(b, e, i)
            for e in entries
        ]
        data = len(refs)
        ctrl: tuple[str, ...] = ()
        if controls:
            done = rendered.get(id(controls))
            if done is None:
                ctrl_refs = [
                    r
                    for e in controls
                    for r in (
                        _every_copy(b, e[1]) if type(e) is not str and e[0] == ALL else [render(b, e, i)]
                    )
                ]
                done = rendered[id(controls)] = (ctrl_refs, g.control_producers(ctrl_refs))
            refs += done[0]
            ctrl = done[1]
        node.input.extend(refs)
        node.device = devs.device(kind, i)
        attrs = node.attr
        if OUTPUT_SHAPES in attrs:
            del attrs[OUTPUT_SHAPES]
        for key in PER_TOWER_NAME_ATTRS:
            if key in attrs and attrs[key].s:
                attrs[key].s = prefix.encode() + attrs[key].s
        targets = []
        if names.COLOCATION_ATTR in attrs:
            # A tower-0-only target has no copy in the other towers: only tower 0 keeps it.
            only0 = regions.tower0_only
            # A node that sits with a shared variable (a read of Adam's beta power, which
            # TensorFlow colocates with a trained variable) stays with the canonical copies.
            shared = kind[0] == "var" and kind[1] not in regions.state
            targets = [
                prefix + t if t in region else replicas[t][i] if t in regions.state and not shared else t
                for t in names.colocation_targets(node)
                if i == 0 or t not in only0
            ]
            names.set_colocation(node, targets)
        written.append((refs, data, tuple(targets), ctrl))
        out.append(node)
    rw.add_many(out, written, False)  # made in bulk, already on their final devices
    b.cloned.update(n.name for n in out)
    for node in out[: len(extras)]:
        rw.record_tower(node.name, i, node.name[len(prefix) :])
    for n in members:
        rw.record_tower(prefix + n, i, n)
    return out


def render(b: Build, entry, i: int) -> str:
    """Plan entry `entry` as tower i's input string."""
    if type(entry) is str:
        return entry
    kind = entry[0]
    if kind == COPY:
        return entry[1] + tower_prefix(i) + entry[2]
    if kind == SINK:
        return b.sinks[entry[1]][i]
    if kind == STATE:
        return entry[1] + b.ctx.replicas[entry[2]][i] + entry[3]
    return _tower_mean(b, entry[1], entry[2])


def _every_copy(b: Build, n: str) -> list[str]:
    return [names.control(tower_name(j, n)) for j in range(b.ctx.num_towers)]


def _tower_mean(b: Build, p: str, k: int) -> str:
    """The element-wise mean of the towers' copies of output `k` of `p` (built once)."""
    t = names.tensor(p, k)
    if t not in b.tower_means:
        rw = b.ctx.rewriter
        dtype = opdefs.output_types(b.plans.by_node[p].src)[k]  # the original may have left the graph
        name = rw.unique_name(f"{p}/tower_mean_{k}")
        tensors = [names.tensor(tower_name(i, p), k) for i in range(b.ctx.num_towers)]
        b.tower_means[t] = mean_of(rw, b.ctx.devices[0], name, tensors, dtype, "Mean")
    return b.tower_means[t]
