"""The collapsed Graphviz (DOT) view of a rewritten graph as DOT text (to_dot) and files (render).

The grouping of nodes into boxes lives in dot_groups; its names are re-exported here.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .dot_groups import (
    HEAVY_OPS,
    MAX_ALLREDUCE_GROUPS,
    NAMES_SHOWN,
    SUMMARY_OPS,
    CollapsedView,
    GraphDef,
    Group,
    collapse,
    human_bytes,
)
from .errors import ConfigError, plural

__all__ = [
    "HEAVY_OPS",
    "MAX_ALLREDUCE_GROUPS",
    "NAMES_SHOWN",
    "SUMMARY_OPS",
    "SVG_TIMEOUT_S",
    "CollapsedView",
    "GraphDef",
    "Group",
    "Rendered",
    "collapse",
    "render",
    "to_dot",
]

SVG_TIMEOUT_S = 120


@dataclass(frozen=True)
class Rendered:
    """What render() wrote: the .dot always, the .svg when graphviz ran (else None, with a note)."""

    dot: Path
    svg: Path | None
    note: str | None = None


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
        f"{title}\n{plural(view.nodes, 'node')}, {plural(len(view.towers), 'tower')}, "
        f"{plural(sum(g.nodes for g in view.variables), 'variable')}"
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
        label = f"variables: {plural(len(view.variables), 'device')}, {human_bytes(total)}"
        out.append(f"    label={_quote(label)};")
        for g in reversed(view.variables):  # graphviz lays nested clusters out last first
            out += _cluster(g.id, g.title, [g], indent=2)
        out.append("  }")
    for g in view.towers:
        out += _cluster(g.id, g.title, [g], indent=1)
    if view.allreduce:
        nodes = sum(g.nodes for g in view.allreduce)
        label = f"all-reduce: {plural(view.allreduce_keys, 'reduction')}, {plural(nodes, 'node')}"
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
