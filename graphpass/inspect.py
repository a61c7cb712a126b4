"""What graphpass sees in a graph: for a single-tower graph its inputs, variables, raw gradients and
updates (and anything it would refuse); for a rewritten graph its towers, devices, variable
placement and all-reduce subgraphs. As a JSON-able dict, and as human tables."""

from __future__ import annotations

from collections import Counter, defaultdict

from tensorflow.python.framework import dtypes

from . import analysis, manifest, naming, opdefs, placement, step_state
from .errors import GraphpassError
from .ir import names
from .ir.graph import Graph

HEAVY_OPS = (
    "MatMul",
    "BatchMatMulV2",
    "Conv2D",
    "Conv3D",
    "Conv2DBackpropFilter",
    "Conv2DBackpropInput",
    "DepthwiseConv2dNative",
)


def inspect_graph(graph_def) -> dict:
    """A report of `graph_def`: "single-tower" or "rewritten", with the facts of each kind."""
    if manifest.read(graph_def) is not None:
        return _rewritten(graph_def)
    if any(n.name.startswith(naming.tower_prefix(0)) for n in graph_def.node) and any(
        naming.REDUCED + "/" in n.name for n in graph_def.node
    ):  # from an older graphpass, or elsewhere: read from the names
        return _rewritten(graph_def)
    return _single(graph_def)


def _dtype(t: int) -> str:
    return dtypes.as_dtype(t).name if t else "?"


def _shape(dims) -> str:
    if dims is None:
        return "?"
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in dims) + "]"


def _single(graph_def) -> dict:
    report: dict = {"kind": "single-tower", "nodes": len(graph_def.node)}
    try:
        a = analysis.analyze(Graph(graph_def))
    except GraphpassError as e:
        report["refused"] = str(e)
        return report
    refused, rewrite_report = _dry_run(graph_def)
    roles = {r.name: r for r in rewrite_report.inputs.roles} if rewrite_report is not None else {}
    report["inputs"] = [
        {
            "name": i.name,
            "op": i.op,
            "dtype": _dtype(i.dtype),
            "shape": _shape(i.shape),
            "split": roles[i.name].split if i.name in roles else None,
            "why": roles[i.name].why if i.name in roles else "",
        }
        for i in a.inputs
    ]
    report["variables"] = [
        {
            "name": v.name,
            "dtype": _dtype(v.dtype),
            "shape": _shape(v.shape),
            "bytes": v.nbytes,
            "role": v.role,
            "slot_of": v.slot_of,
            "resource": v.resource,
            "initializer": v.initializer,
            "reads": len(v.reads),
        }
        for v in a.variables.values()
    ]
    report["gradient_scopes"] = a.gradient_scopes
    report["gradients"] = [
        {"tensor": g.tensor, "kind": g.kind, "variable": g.variable, "updates": g.updates}
        for g in a.gradients
    ]
    report["updates"] = [
        {
            "name": u.name,
            "op": u.op,
            "variable": u.var,
            "state": u.state,
            "sparse": u.sparse,
            "post_processing": [p for p in u.post if p != u.name],
        }
        for u in a.updates
    ]
    report["global_step"] = a.global_step
    report["global_step_increment"] = a.global_step_increment
    report["train_ops"] = a.train_ops
    report["init_ops"] = a.init_ops
    order = step_state.plan(Graph(graph_def), a.variables, a.library, a.step)
    report["step_state"] = {
        "ordered": list(order.state),
        "reads": [{"variable": v, "read": r, "write": w} for v, r, w in order.edges],
        "left": list(order.notes),
    }
    report["notes"] = list(a.backward.notes)
    report["refused"] = refused
    return report


def _step_state(state: dict) -> str:
    """What the rewrite orders: the reads of each variable the step writes that nothing orders
    against the write (each tower then reads the value from the start of the step)."""
    if not state["ordered"]:
        return "every read of what the step writes is ordered against the write"
    reads: dict[str, list[str]] = {}
    for e in state["reads"]:
        reads.setdefault(e["variable"], []).append(e["read"])
    shown = {v: ", ".join(rs[:2]) + (", ..." if len(rs) > 2 else "") for v, rs in reads.items()}
    return "; ".join(
        f"{v}: {len(reads[v])} read(s) ({s}) made to run before its write" for v, s in shown.items()
    )


def _dry_run(graph_def):
    """(What a plain rewrite (2 CPU towers, replicated, collective) refuses, or None; its Report,
    or None)."""
    from .api import rewrite_to_buffer

    try:
        return None, rewrite_to_buffer(
            graph_def, devices=2, rules="replicated-collective", device_type="CPU"
        )[1]
    except GraphpassError as e:
        return str(e), None


def _rewritten(graph_def) -> dict:
    nodes_by_device = Counter(n.device or "(none)" for n in graph_def.node)
    towers: dict[int, dict] = {}
    tower_of = manifest.tower_reader(graph_def)
    for n in graph_def.node:
        tower = tower_of(n.name)
        if not tower:
            continue
        t = towers.setdefault(tower[0], {"nodes": 0, "heavy_ops": 0, "devices": Counter()})
        t["nodes"] += 1
        t["heavy_ops"] += n.op in HEAVY_OPS
        t["devices"][n.device] += 1
    variables = [n for n in graph_def.node if opdefs.is_variable_op(n.op)]
    canonical = {v.name: v for v in variables if not tower_of(v.name)}
    by_device: dict[str, int] = defaultdict(int)
    groups: dict[str, int] = defaultdict(int)  # a slot (colocated with its variable) counts with it
    for v in canonical.values():
        size = _var_bytes(v)
        by_device[v.device] += size
        owner = next((t for t in names.colocation_targets(v) if t in canonical), v.name)
        groups[owner] += size
    load = placement.Load(dict(sorted(by_device.items())), max(groups.values(), default=0))
    recorded = manifest.read(graph_def)
    return {
        "inputs": {
            "split": list(recorded.split) if recorded else None,
            "broadcast": list(recorded.broadcast) if recorded else None,
        },
        "kind": "rewritten",
        "nodes": len(graph_def.node),
        "towers": len(towers),
        "tower_nodes": {
            i: {"nodes": t["nodes"], "heavy_ops": t["heavy_ops"], "device": t["devices"].most_common(1)[0][0]}
            for i, t in sorted(towers.items())
        },
        "nodes_per_device": dict(sorted(nodes_by_device.items())),
        "variables": {
            "canonical": len(canonical),
            "replicas": len(variables) - len(canonical),
        },
        "bytes_per_device": load.per_device,
        "imbalance": round(load.imbalance, 4),
        "allreduce": _reductions(graph_def),
    }


def _var_bytes(node) -> int:
    shape = node.attr.get("shape")
    dtype = node.attr.get("dtype")
    if shape is None or dtype is None or shape.shape.unknown_rank:
        return 0
    dims = [d.size for d in shape.shape.dim]
    if any(d < 0 for d in dims):
        return 0
    n = 1
    for d in dims:
        n *= d
    return n * dtypes.as_dtype(dtype.type).size


ALGORITHM_MARKS = (
    ("CollectiveReduceV2", "collective"),
    ("NcclAllReduce", "nccl"),
    ("group0_sum", "hierarchical"),
    ("reduce_step", "ring"),
    ("halving", "halving-doubling"),
    ("gathered", "gather (sparse)"),
    ("densify", "dense (sparse)"),
)


def _reductions(graph_def) -> dict:
    """The all-reduce subgraphs: how many, the algorithm each looks like, and the bytes of dense
    gradients each tower contributes per step."""
    scopes: dict[str, list] = defaultdict(list)
    for n in graph_def.node:
        key = naming.allreduce_key(n.name)
        if key is not None:
            scopes[key].append(n)
    algorithms: Counter = Counter()
    for members in scopes.values():
        joined = " ".join(m.name + " " + m.op for m in members)
        algorithms[next((a for mark, a in ALGORITHM_MARKS if mark in joined), "naive/colocate")] += 1
    by_name = {n.name: n for n in graph_def.node}
    gradients = sorted(
        {key for key in map(naming.reduced_key, (n.name for n in graph_def.node)) if key is not None}
    )
    total = sum(
        _var_bytes(by_name[g]) for g in gradients if g in by_name and opdefs.is_variable_op(by_name[g].op)
    )
    return {
        "reductions": len(scopes),
        "algorithms": dict(sorted(algorithms.items())),
        "bytes": total,
        "gradients": len(gradients),
    }


# -- rendering ------------------------------------------------------------------------------------


def _table(rows: list[list], headers: list[str]) -> list[str]:
    cells = [[str(c) for c in r] for r in [headers] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for k, r in enumerate(cells):
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _towers(split: bool | None) -> str:
    return "?" if split is None else "split" if split else "whole"


def render(report: dict, max_rows: int = 40) -> str:
    """Human-readable tables for a report from inspect_graph()."""
    lines = [f"{report['kind']} graph, {report['nodes']} nodes"]
    if report["kind"] == "single-tower":
        if "inputs" not in report:
            lines.append(f"refused: {report['refused']}")
            return "\n".join(lines)
        lines += ["", "inputs"]
        lines += _table(
            [
                [i["name"], i["op"], i["dtype"], i["shape"], _towers(i["split"]), i["why"] or "-"]
                for i in report["inputs"]
            ],
            ["name", "op", "dtype", "shape", "towers", "why"],
        )
        variables = report["variables"]
        lines += ["", f"variables ({len(variables)}, {_bytes(sum(v['bytes'] for v in variables))})"]
        rows = [
            [
                v["name"],
                v["role"] + (f" of {v['slot_of']}" if v["slot_of"] else ""),
                v["dtype"],
                v["shape"],
                _bytes(v["bytes"]),
                v["initializer"] or "-",
            ]
            for v in variables
        ]
        lines += _table(rows[:max_rows], ["name", "role", "dtype", "shape", "size", "initializer"])
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more")
        grads = report["gradients"]
        lines += [
            "",
            f"raw gradients ({len(grads)}; backward pass under "
            f"{', '.join(report['gradient_scopes']) or 'no gradient scope'})",
        ]
        rows = [[g["tensor"], g["kind"], g["variable"]] for g in grads]
        lines += _table(rows[:max_rows], ["tensor (the cut)", "kind", "variable"])
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more")
        updates = report["updates"]
        lines += ["", f"updates ({len(updates)})"]
        rows = [[u["name"], u["op"], u["variable"], len(u["post_processing"])] for u in updates]
        lines += _table(rows[:max_rows], ["node", "op", "variable", "post-processing nodes"])
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more")
        lines += [
            "",
            f"global step   {report['global_step'] or '-'}"
            + (f" (incremented by {report['global_step_increment']})" if report["global_step"] else ""),
            f"train ops     {', '.join(report['train_ops']) or '-'}",
            f"init ops      {', '.join(report['init_ops']) or '-'}",
            f"step state    {_step_state(report['step_state'])}",
            f"refused       {report['refused'] or 'nothing (a 2-tower replicated rewrite succeeds)'}",
        ]
        lines += [f"note          {n}" for n in report["notes"] + report["step_state"]["left"]]
        return "\n".join(lines)
    lines.append(
        f"{report['towers']} towers; variables: {report['variables']['canonical']} canonical, "
        f"{report['variables']['replicas']} replicas"
    )
    inputs = report["inputs"]
    if inputs["split"] is not None:
        lines += [
            "",
            f"inputs split across the towers: {', '.join(inputs['split']) or '-'}",
            f"inputs every tower reads whole: {', '.join(inputs['broadcast']) or '-'}",
        ]
    lines += ["", "towers"]
    lines += _table(
        [[i, t["device"], t["nodes"], t["heavy_ops"]] for i, t in report["tower_nodes"].items()],
        ["tower", "device", "nodes", "heavy ops"],
    )
    lines += ["", "nodes per device"]
    lines += _table([[d, n] for d, n in report["nodes_per_device"].items()], ["device", "nodes"])
    lines += ["", f"variable bytes per device (imbalance {report['imbalance']:.2f})"]
    lines += _table([[d, _bytes(b)] for d, b in report["bytes_per_device"].items()], ["device", "bytes"])
    ar = report["allreduce"]
    algos = ", ".join(f"{a} x{n}" for a, n in ar["algorithms"].items())
    lines += [
        "",
        f"all-reduce: {ar['reductions']} reductions ({algos}) for {ar['gradients']} gradients, "
        f"{_bytes(ar['bytes'])} per tower per step",
    ]
    return "\n".join(lines)
