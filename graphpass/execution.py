"""Verifying a rewrite against its single-tower original on virtual CPUs (verify_rewrite).

Running graphs lives in runner, comparing their values in comparison; both are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf
from tensorflow.python.framework import dtypes

from . import manifest, opdefs
from .comparison import (
    ROUNDING_FACTOR,
    Comparison,
    compare,
    rel_diff,
    repeated_runs,
    replicas_of,
    rounding_noise,
    step_ordered,
)
from .runner import Runner, random_batches, session_config, tf1

__all__ = [
    "ROUNDING_FACTOR",
    "Comparison",
    "Runner",
    "Verification",
    "compare",
    "cpu_unsupported",
    "on_cpus",
    "random_batches",
    "rel_diff",
    "repeated_runs",
    "replicas_of",
    "rounding_noise",
    "session_config",
    "step_ordered",
    "tf1",
    "tower_count",
    "verify_rewrite",
]


@dataclass
class Verification:
    """The outcome of `verify_rewrite`: a structural check, then (where it can) an execution check."""

    towers: int
    problems: list[str] = field(default_factory=list)
    executed: bool = False
    reason: str = ""
    comparison: Comparison | None = None
    runs: int = 0
    # Per variable, how far the rewrite's results of repeated runs from one state differ (a race
    # between a read and a write of step state); replicas that drifted in any run.
    varying: dict[str, float] = field(default_factory=dict)
    drifting: dict[str, float] = field(default_factory=dict)

    def ok(self, rtol: float = 1e-5) -> bool:
        if self.problems or self.varying or self.drifting:
            return False
        return self.comparison.ok(rtol) if self.comparison is not None else True


def tower_count(graph_def) -> int:
    """How many towers a rewritten graph has (0 for a single-tower graph)."""
    found = set()
    tower_of = manifest.tower_reader(graph_def)
    for node in graph_def.node:
        tower = tower_of(node.name)
        if tower:
            found.add(tower[0])
    return max(found) + 1 if found else 0


def on_cpus(graph_def, towers: int):
    """A copy of a rewritten graph with tower i's device mapped to /device:CPU:i and every other
    device to /device:CPU:0, so it runs in one process on virtual CPUs."""
    from collections import Counter

    per_tower: dict[int, Counter] = {}
    tower_of = manifest.tower_reader(graph_def)
    for node in graph_def.node:
        tower = tower_of(node.name)
        if tower:
            per_tower.setdefault(tower[0], Counter())[node.device] += 1
    mapping = {c.most_common(1)[0][0]: f"/device:CPU:{i}" for i, c in per_tower.items() if c}
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    for node in out.node:
        node.device = mapping.get(node.device, "/device:CPU:0")
    return out


def cpu_unsupported(graph_def) -> list[str]:
    """Op types in the graph with no CPU kernel."""
    missing = set()
    for node in graph_def.node:
        if node.op not in missing and not opdefs.has_kernel(node, "CPU"):
            missing.add(node.op)
    return sorted(missing)


def _feed_specs(analysis_result, rewritten) -> dict[str, dict]:
    """What to feed both graphs: every placeholder, and every placeholder with a default that the
    rewrite split (as its manifest records; for a graph from elsewhere, every one of rank 1+)."""
    recorded = manifest.read(rewritten)
    split = set(recorded.split) if recorded is not None else None
    specs = {}
    for inp in analysis_result.inputs:
        shard = inp.name in split if split is not None else inp.shape is None or len(inp.shape) > 0
        if inp.op != "Placeholder" and not shard:
            continue  # a PlaceholderWithDefault that is not split keeps its default
        shape = inp.shape if inp.shape is not None else [None]
        specs[inp.name] = {"shape": shape, "dtype": dtypes.as_dtype(inp.dtype).name}
    return specs


def verify_rewrite(
    original,
    rewritten,
    steps: int = 3,
    batch: int | None = None,
    seed: int = 0,
    int_high: int = 2,
    timeout_s: float = 300.0,
    runs: int = 3,
) -> Verification:
    """Check a rewrite against its single-tower original.

    Structure first (the verifier's invariants; every feed, train op and init op of the original
    still there). Then, unless an op has no CPU kernel (NCCL), both graphs run on virtual CPUs
    from the same initial values on the same random global batches for `steps` steps.

    Args:
        original, rewritten: GraphDefs, or paths of graph files.
        steps: train steps to run.
        batch: the global batch (default 4 per tower).
        seed: for the random batches.
        int_high: integer inputs (labels, ids) are drawn from [0, int_high).
        timeout_s: the deadline of each session run (a broken collective would wait forever).
        runs: the rewrite's steps are also run this many times from one state; results that
            differ between runs (a race) or replicas that drift in any run fail the check.
    Returns:
        A Verification; `.ok(rtol)` says whether it passed.
    """
    from . import analysis, batch_dims
    from .errors import GraphpassError, InternalError
    from .io import load_graph
    from .ir import verify
    from .ir.graph import Graph

    original, rewritten = (
        g if isinstance(g, tf.compat.v1.GraphDef) else load_graph(g) for g in (original, rewritten)
    )
    k = tower_count(rewritten)
    result = Verification(towers=k)
    try:
        verify.check(Graph(rewritten))
    except InternalError as e:
        result.problems.append(str(e))
    try:
        info = analysis.analyze(Graph(original))
    except GraphpassError as e:
        result.problems.append(f"the original cannot be analysed: {e}")
        return result
    present = {n.name: n for n in rewritten.node}
    for name in [i.name for i in info.inputs] + info.train_ops[:1] + info.init_ops[:1]:
        if name not in present:
            result.problems.append(f"'{name}' of the original is missing from the rewrite")
    if k == 0:
        result.problems.append("the second graph has no tower copies: it is not a rewrite")
    if result.problems or not info.train_ops or not info.init_ops:
        if not info.train_ops or not info.init_ops:
            result.reason = "no train op or init op found in the original"
        return result
    missing = cpu_unsupported(rewritten)
    if missing:
        result.reason = f"structure only: {', '.join(missing)} has no CPU kernel"
        return result
    sparse = batch_dims.sparse_inputs(Graph(original), {i.name: i for i in info.inputs})
    if sparse:
        result.reason = (
            f"structure only: sparse input '{sparse[0].indices}' cannot be fed random batches "
            "(execution.compare takes batches you make)"
        )
        return result
    specs = _feed_specs(info, rewritten)
    batches = random_batches(specs, batch or 4 * k, steps, seed, int_high=lambda _: int_high)
    try:
        result.comparison = compare(
            step_ordered(original),
            on_cpus(rewritten, k),
            k,
            batches,
            info.train_ops[0],
            info.init_ops[0],
            timeout_s,
        )
    except tf.errors.OpError as e:
        first = (e.message or type(e).__name__).strip().splitlines()[0]
        result.problems.append(f"running the graphs failed ({type(e).__name__}): {first}")
        return result
    result.executed = True
    if runs > 1:
        result.runs = runs
        result.varying, result.drifting = repeated_runs(
            on_cpus(rewritten, k), k, batches, info.train_ops[0], info.init_ops[0], runs, timeout_s
        )
    return result
