"""A collapsed Graphviz (DOT) view of a rewritten graph: towers, variables per device, all-reduce, global."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tensorflow.core.framework import graph_pb2

from . import opdefs
from .diff import natural_key
from .errors import ConfigError, InvalidGraphError
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
SVG_TIMEOUT_S = 120

_TOWER = re.compile(r"^tower(\d+)/")
_ALLREDUCE = re.compile(r"^(?:tower\d+/)?allreduce/")


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


@dataclass(frozen=True)
class Rendered:
    """What render() wrote: the .dot always, the .svg when graphviz ran (else None, with a note)."""

    dot: Path
    svg: Path | None
    note: str | None = None


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
        if node.name in nodes:
            raise InvalidGraphError(f"the graph has two nodes named '{node.name}'")
        nodes[node.name] = node
    used = {names.node_of(r) for node in graph_def.node for r in node.input}
    placeholders = sorted(n.name for n in graph_def.node if n.op == "Placeholder")
    split_scopes = tuple(f"{p}/split" for p in placeholders)
    single = not any(_TOWER.match(name) for name in nodes)

    assignment: dict[str, tuple[str, str]] = {}  # node -> (kind, key)
    for name, node in nodes.items():
        assignment[name] = _classify(name, node, single, split_scopes, name in used)

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


def _classify(name: str, node, single: bool, split_scopes: tuple[str, ...], used: bool) -> tuple[str, str]:
    if opdefs.is_variable_op(node.op):
        return "variables", node.device
    if _ALLREDUCE.match(name):
        rest = name[_ALLREDUCE.match(name).end() :]
        return "allreduce", rest.rpartition("/")[0]
    if name.startswith("reduced_grads/"):
        return "allreduce", "reduced_grads"
    if name.startswith("grad_packs/"):
        return "allreduce", "grad_packs"
    tower = _TOWER.match(name)
    if tower:
        return "tower", tower.group(1)
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
        packs = [m for m in g.members if m.startswith(f"tower{key}/grad_packs/")]
        g.lines = [g.device or "(no device)", _plural(g.nodes, "node")]
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
        size = _human_bytes(g.bytes) + (f" + {unknown} of unknown size" if unknown else "")
        g.lines = [_plural(g.nodes, "variable"), size, _names(sorted(g.members))]
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
        g.lines.append(f"{_plural(g.nodes, 'node')} on {_plural(len(devices), 'device')}")
        out.append(g)
    return out


def _inputs(groups: dict, nodes: dict, placeholders: list[str]) -> Group | None:
    g = groups.get(("inputs", ""))
    if g is None:
        return None
    g.id, g.title = "inputs", "inputs"
    g.device = _main_device(g.members, nodes)
    ways = sorted({nodes[f"{p}/split"].attr["num_split"].i for p in placeholders if f"{p}/split" in nodes})
    g.lines = [f"{_plural(len(placeholders), 'placeholder')}: {_names(placeholders)}"]
    if ways:
        g.lines.append(f"split {'/'.join(str(w) for w in ways)} ways")
    g.lines.append(_plural(g.nodes, "node"))
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
    g.lines = [_plural(g.nodes, "node")]
    if roots:
        g.lines.append(f"roots: {_names(roots)}")
    if summaries:
        g.lines.append(_plural(summaries, "summary", "summaries"))
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


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    power = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024**power:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[power - 1]} ({n:,} B)"


def _counts(counter: Counter, shown: int = 4) -> str:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{op} x{n}" for op, n in ranked[:shown])
    return text + (f", +{len(ranked) - shown} more" if len(ranked) > shown else "")


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def _names(items: list[str]) -> str:
    text = ", ".join(items[:NAMES_SHOWN])
    return text + (f" +{len(items) - NAMES_SHOWN} more" if len(items) > NAMES_SHOWN else "")


# -- DOT text ------------------------------------------------------------------------------

_LEVELS = {"inputs": 0, "variables": 0, "tower": 1, "allreduce": 2, "global": 3}  # top to bottom
_COLORS = {
    "tower": "#dbe9f6",
    "variables": "#fff2c6",
    "allreduce": "#f8d3cc",
    "inputs": "#e3f1dc",
    "global": "#eeeeee",
}


def to_dot(
    graph_def: GraphDef, title: str = "graphpass", max_allreduce_groups: int = MAX_ALLREDUCE_GROUPS
) -> str:
    """The collapsed view of `graph_def` as DOT text.

    One cluster per tower (`cluster_tower{i}`: index, device, node count, heavy ops), a
    `cluster_variables` with one cluster per device (count and bytes), a `cluster_allreduce` (one box
    per `allreduce/<key>` with its op types, or one box in all), a `cluster_global` (inputs, and
    init / train op / loss / summaries), and edges between boxes labelled with edge counts (data
    solid, control dashed).

    Args:
        graph_def: a rewritten graph, or a single-tower one (drawn as one tower).
        title: the graph's caption.
        max_allreduce_groups: the most all-reduce keys drawn one box each.
    Returns:
        DOT text; the same for the same graph.
    Raises:
        InvalidGraphError: two nodes share a name.
    """
    view = collapse(graph_def, max_allreduce_groups)
    caption = (
        f"{title}\n{_plural(view.nodes, 'node')}, {_plural(len(view.towers), 'tower')}, "
        f"{_plural(sum(g.nodes for g in view.variables), 'variable')}"
    )
    out = [
        "digraph graphpass {",
        # mclimit: few crossing-minimisation passes, so towers keep their index order
        f"  graph [label={_quote(caption)}, labelloc=t, fontname=Helvetica, newrank=true, mclimit=0.01];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    if view.inputs is not None:
        out += _cluster("inputs", "inputs", [view.inputs], indent=1)
    if view.variables:
        out.append("  subgraph cluster_variables {")
        total = sum(g.bytes for g in view.variables)
        label = f"variables: {_plural(len(view.variables), 'device')}, {_human_bytes(total)}"
        out.append(f"    label={_quote(label)};")
        for g in reversed(view.variables):  # graphviz lays nested clusters out last first
            out += _cluster(g.id, g.title, [g], indent=2)
        out.append("  }")
    for g in view.towers:
        out += _cluster(g.id, g.title, [g], indent=1)
    if view.allreduce:
        nodes = sum(g.nodes for g in view.allreduce)
        label = f"all-reduce: {_plural(view.allreduce_keys, 'reduction')}, {_plural(nodes, 'node')}"
        out += _cluster("allreduce", label, view.allreduce, indent=1)
    if view.global_ is not None:
        out += _cluster("global", "global", [view.global_], indent=1)
    for row in (view.variables, view.towers, view.allreduce):  # each row on one rank
        if len(row) > 1:
            out.append("  { rank=same; " + " ".join(f"{_quote(g.id)};" for g in row) + " }")
    if len(view.towers) > 1:  # towers left to right in index order
        out.append("  " + " -> ".join(_quote(g.id) for g in view.towers) + " [style=invis];")
    level = {g.id: _LEVELS[g.kind] for g in view.groups()}
    for (src, dst), (data, control) in view.edges.items():
        edge = f"  {_quote(src)} -> {_quote(dst)}"
        upward = ", constraint=false" if level[src] > level[dst] else ""
        if data:
            out.append(f"{edge} [label={_quote(str(data))}, penwidth={_width(data)}{upward}];")
        if control:
            out.append(f"{edge} [label={_quote(f'{control} ctrl')}, style=dashed{upward}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _cluster(cid: str, label: str, groups: list[Group], indent: int) -> list[str]:
    pad = "  " * indent
    out = [f"{pad}subgraph cluster_{cid} {{", f"{pad}  label={_quote(label)};"]
    for g in groups:
        text = "\n".join([g.title] + g.lines) if g.kind != "variables" else "\n".join(g.lines)
        out.append(f"{pad}  {_quote(g.id)} [label={_quote(text)}, fillcolor={_quote(_COLORS[g.kind])}];")
    out.append(f"{pad}}}")
    return out


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _width(count: int) -> str:
    return f"{1 + min(math.log2(count), 4):.1f}"


# -- files ---------------------------------------------------------------------------------


def render(dot_text: str, out_path: str | os.PathLike, svg: bool = True) -> Rendered:
    """Write `dot_text` to a .dot file and, when graphviz's `dot` is on PATH, an .svg beside it.

    `out_path` ending in .dot/.gv names the DOT file, ending in .svg names the SVG; any other path
    gets ".dot" and ".svg" appended. A missing `dot` executable is not an error (svg is None).

    Args:
        dot_text: the DOT source (from to_dot()).
        out_path: where to write.
        svg: also try to make the SVG.
    Returns:
        Rendered(dot, svg, note): the paths written; note says why there is no SVG when one was
        wanted.
    Raises:
        ConfigError: the output directory does not exist or cannot be written.
    """
    path = Path(out_path)
    suffix = path.suffix.lower()
    if suffix in (".dot", ".gv"):
        dot_path, svg_path = path, path.with_suffix(".svg")
    elif suffix == ".svg":
        dot_path, svg_path = path.with_suffix(".dot"), path
    else:
        dot_path, svg_path = Path(f"{path}.dot"), Path(f"{path}.svg")
    directory = dot_path.parent if str(dot_path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError(f"output directory {directory} does not exist")
    try:
        dot_path.write_text(dot_text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write {dot_path}: {e.strerror}") from None
    if not svg:
        return Rendered(dot_path, None)
    exe = shutil.which("dot")
    if exe is None:
        return Rendered(dot_path, None, "graphviz 'dot' is not on PATH: no SVG written")
    try:
        run = subprocess.run(
            [exe, "-Tsvg", str(dot_path), "-o", str(svg_path)],
            capture_output=True,
            text=True,
            timeout=SVG_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return Rendered(dot_path, None, f"graphviz 'dot' failed: {type(e).__name__}")
    if run.returncode != 0:
        first = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[0]
        return Rendered(dot_path, None, f"graphviz 'dot' failed: {first}")
    return Rendered(dot_path, svg_path)
