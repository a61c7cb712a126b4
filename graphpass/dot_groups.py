"""Grouping a graph's nodes into the collapsed view's boxes: towers, variables, all-reduce, inputs, global."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from tensorflow.core.framework import graph_pb2

from . import manifest, naming, opdefs
from .diff import natural_key
from .errors import InvalidGraphError, plural
from .ir import names

GraphDef = graph_pb2.GraphDef

HEAVY_OPS = frozenset(
    {
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "Einsum",
        "Conv2D",
        "Conv3D",
        "Conv2DBackpropInput",
        "Conv2DBackpropFilter",
        "Conv3DBackpropInputV2",
        "Conv3DBackpropFilterV2",
        "DepthwiseConv2dNative",
        "DepthwiseConv2dNativeBackpropInput",
        "DepthwiseConv2dNativeBackpropFilter",
        "_FusedMatMul",
        "_FusedConv2D",
    }
)
SUMMARY_OPS = frozenset({"MergeSummary", "ScalarSummary", "HistogramSummary", "ImageSummary", "AudioSummary"})
MAX_ALLREDUCE_GROUPS = 12  # more reduction keys than this: one all-reduce node instead of one per key
NAMES_SHOWN = 4  # names listed in a label before "+N more"


@dataclass
class Group:
    """One box of the collapsed view: the graph nodes it stands for, summarised."""

    id: str  # the DOT node id
    kind: str  # "tower", "variables", "allreduce", "inputs" or "global"
    title: str
    members: list[str] = field(default_factory=list)
    device: str = ""
    lines: list[str] = field(default_factory=list)  # label lines under the title
    bytes: int = 0  # variables: the bytes of those with a static shape

    @property
    def nodes(self) -> int:
        return len(self.members)


@dataclass
class CollapsedView:
    """A graph reduced to groups and the edge counts between them (see collapse())."""

    nodes: int
    towers: list[Group]
    variables: list[Group]
    allreduce: list[Group]
    inputs: Group | None
    global_: Group | None
    edges: dict[tuple[str, str], tuple[int, int]]  # (src id, dst id) -> (data edges, control edges)
    allreduce_keys: int = 0
    single_tower: bool = False

    def groups(self) -> list[Group]:
        """Every group in output order: inputs, global, variables, towers, all-reduce."""
        head = [g for g in (self.inputs, self.global_) if g is not None]
        return head + self.variables + self.towers + self.allreduce


def collapse(graph_def: GraphDef, max_allreduce_groups: int = MAX_ALLREDUCE_GROUPS) -> CollapsedView:
    """Group the nodes of a (rewritten or single-tower) graph for the collapsed view.

    Every node lands in exactly one group: variables (ops that create a variable) by device;
    `[tower{i}/]allreduce/<key>/...` and unprefixed `reduced_grads/`, `grad_packs/` in the all-reduce
    groups (one per key, or one in all when there are more than `max_allreduce_groups` keys);
    other `tower{i}/...` nodes in tower i; placeholders and their `<placeholder>/split` subgraphs
    in inputs; the rest in global. A graph without `tower{i}/` names is one tower (index 0) and its
    global group keeps only the root NoOps (init, train), summaries and `save/`.

    Args:
        graph_def: the graph.
        max_allreduce_groups: the most all-reduce keys drawn one box each.
    Returns:
        The CollapsedView.
    Raises:
        InvalidGraphError: two nodes share a name.
    """
    nodes = {}
    for node in graph_def.node:
        if manifest.is_manifest(node):
            continue  # the rewrite's record of itself, not part of the step
        if node.name in nodes:
            raise InvalidGraphError(f"the graph has two nodes named '{node.name}'")
        nodes[node.name] = node
    used = {names.node_of(r) for node in graph_def.node for r in node.input}
    placeholders = sorted(n.name for n in graph_def.node if n.op == "Placeholder")
    split_scopes = tuple(f"{p}/split" for p in placeholders)
    tower_of = manifest.tower_reader(graph_def)
    single = not any(tower_of(name) for name in nodes)

    assignment: dict[str, tuple[str, str]] = {}  # node -> (kind, key)
    for name, node in nodes.items():
        assignment[name] = _classify(name, node, single, split_scopes, name in used, tower_of)

    keys = sorted({key for kind, key in assignment.values() if kind == "allreduce"}, key=natural_key)
    per_key = len(keys) <= max_allreduce_groups
    groups: dict[tuple[str, str], Group] = {}
    for name in nodes:
        kind, key = assignment[name]
        if kind == "allreduce" and not per_key:
            key = ""
        gkey = (kind, key)
        if gkey not in groups:
            groups[gkey] = Group(id="", kind=kind, title="")
        groups[gkey].members.append(name)

    view = CollapsedView(
        nodes=len(nodes),
        towers=_towers(groups, nodes),
        variables=_variables(groups, nodes),
        allreduce=_allreduce(groups, nodes, per_key),
        inputs=_inputs(groups, nodes, placeholders),
        global_=_global(groups, nodes, used),
        edges={},
        allreduce_keys=len([k for k in keys if k not in ("", "reduced_grads", "grad_packs")]),
        single_tower=single,
    )
    group_of = {}
    for group in view.groups():
        for member in group.members:
            group_of[member] = group.id
    shared = {g.id for g in view.allreduce if g.title == "allreduce (shared)"}
    counts: dict[tuple[str, str], list[int]] = {}
    for name, node in nodes.items():
        dst = group_of[name]
        for ref in node.input:
            producer = names.node_of(ref)
            src = group_of.get(producer)
            if src is None or src == dst or (src in shared and dst.startswith("allreduce")):
                continue
            pair = counts.setdefault((src, dst), [0, 0])
            pair[1 if names.is_control(ref) else 0] += 1
    order = {g.id: i for i, g in enumerate(view.groups())}
    ranked = sorted(counts.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]]))
    view.edges = {pair: (data, control) for pair, (data, control) in ranked}
    return view


def _classify(
    name: str, node, single: bool, split_scopes: tuple[str, ...], used: bool, tower_of
) -> tuple[str, str]:
    if opdefs.is_variable_op(node.op):
        return "variables", node.device
    path = naming.allreduce_path(name)
    if path is not None:
        return "allreduce", path.rpartition("/")[0]
    if name.startswith(naming.REDUCED + "/"):
        return "allreduce", naming.REDUCED
    if name.startswith(naming.PACKS + "/"):
        return "allreduce", naming.PACKS
    tower = tower_of(name)
    if tower:
        return "tower", str(tower[0])
    if node.op == "Placeholder" or any(name == s or name.startswith(s + "/") for s in split_scopes):
        return "inputs", ""
    if not single:
        return "global", ""
    if (node.op == "NoOp" and not used) or node.op in SUMMARY_OPS or name.startswith("save/"):
        return "global", ""
    return "tower", "0"


def _main_device(members: list[str], nodes: dict) -> str:
    counts = Counter(nodes[m].device for m in members)
    return sorted(counts.items(), key=lambda kv: (-kv[1], natural_key(kv[0])))[0][0] if counts else ""


def _towers(groups: dict, nodes: dict) -> list[Group]:
    out = []
    for kind, key in sorted((k for k in groups if k[0] == "tower"), key=lambda k: int(k[1])):
        g = groups[(kind, key)]
        g.id, g.title = f"tower{key}", f"tower {key}"
        g.device = _main_device(g.members, nodes)
        heavy = Counter(nodes[m].op for m in g.members if nodes[m].op in HEAVY_OPS)
        packs = [m for m in g.members if naming.pack_of(m) is not None]
        g.lines = [g.device or "(no device)", plural(g.nodes, "node")]
        g.lines.append(f"heavy ops: {_counts(heavy)}" if heavy else "heavy ops: none")
        if packs:
            g.lines.append(f"grad packs: {len(packs)} nodes")
        out.append(g)
    return out


def _variables(groups: dict, nodes: dict) -> list[Group]:
    out = []
    devices = sorted((k[1] for k in groups if k[0] == "variables"), key=natural_key)
    for i, device in enumerate(devices):
        g = groups[("variables", device)]
        g.id, g.title, g.device = f"vars{i}", device or "(no device)", device
        sizes = [_variable_bytes(nodes[m]) for m in g.members]
        g.bytes = sum(s for s in sizes if s is not None)
        unknown = sum(1 for s in sizes if s is None)
        size = human_bytes(g.bytes) + (f" + {unknown} of unknown size" if unknown else "")
        g.lines = [plural(g.nodes, "variable"), size, _names(sorted(g.members))]
        out.append(g)
    return out


def _allreduce(groups: dict, nodes: dict, per_key: bool) -> list[Group]:
    out = []
    keys = sorted((k[1] for k in groups if k[0] == "allreduce"), key=natural_key)
    for i, key in enumerate(keys):
        g = groups[("allreduce", key)]
        g.id = f"allreduce{i}"
        if not per_key:
            g.title = "allreduce"
        elif key in ("reduced_grads", "grad_packs"):
            g.title = key
        else:
            g.title = f"allreduce/{key}" if key else "allreduce (shared)"
        ops = Counter(nodes[m].op for m in g.members if nodes[m].op != "Const")
        devices = {nodes[m].device for m in g.members}
        g.device = _main_device(g.members, nodes)
        g.lines = [_counts(ops) if ops else f"Const x{g.nodes}"]
        g.lines.append(f"{plural(g.nodes, 'node')} on {plural(len(devices), 'device')}")
        out.append(g)
    return out


def _inputs(groups: dict, nodes: dict, placeholders: list[str]) -> Group | None:
    g = groups.get(("inputs", ""))
    if g is None:
        return None
    g.id, g.title = "inputs", "inputs"
    g.device = _main_device(g.members, nodes)
    ways = sorted({nodes[f"{p}/split"].attr["num_split"].i for p in placeholders if f"{p}/split" in nodes})
    g.lines = [f"{plural(len(placeholders), 'placeholder')}: {_names(placeholders)}"]
    if ways:
        g.lines.append(f"split {'/'.join(str(w) for w in ways)} ways")
    g.lines.append(plural(g.nodes, "node"))
    return g


def _global(groups: dict, nodes: dict, used: set[str]) -> Group | None:
    g = groups.get(("global", ""))
    if g is None:
        return None
    g.id, g.title = "global", "global"
    g.device = _main_device(g.members, nodes)
    roots = sorted(
        (m for m in g.members if m not in used), key=lambda m: (nodes[m].op != "NoOp", "/" in m, m)
    )
    summaries = sum(1 for m in g.members if nodes[m].op in SUMMARY_OPS)
    g.lines = [plural(g.nodes, "node")]
    if roots:
        g.lines.append(f"roots: {_names(roots)}")
    if summaries:
        g.lines.append(plural(summaries, "summary", "summaries"))
    return g


def _variable_bytes(node) -> int | None:
    """Bytes of a variable from its `shape` and `dtype` attributes; None when not static."""
    from tensorflow.python.framework import dtypes

    shape = node.attr["shape"].shape if "shape" in node.attr else None
    if shape is None or shape.unknown_rank or "dtype" not in node.attr:
        return None
    try:
        item = dtypes.as_dtype(node.attr["dtype"].type).size
    except (TypeError, ValueError):
        return None
    if item <= 0 or any(d.size < 0 for d in shape.dim):
        return None
    return math.prod(d.size for d in shape.dim) * item


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    power = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024**power:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[power - 1]} ({n:,} B)"


def _counts(counter: Counter, shown: int = 4) -> str:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{op} x{n}" for op, n in ranked[:shown])
    return text + (f", +{len(ranked) - shown} more" if len(ranked) > shown else "")


def _names(items: list[str]) -> str:
    text = ", ".join(items[:NAMES_SHOWN])
    return text + (f" +{len(items) - NAMES_SHOWN} more" if len(items) > NAMES_SHOWN else "")
