"""Comparing a rewrite with its single-tower original: variables, replicas, rounding noise, repeated runs."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

import numpy as np

from . import naming
from .runner import Runner


@dataclass
class Comparison:
    """The outcome of running an original and its rewrite side by side."""

    steps: int
    max_rel_diff: dict[str, float] = field(default_factory=dict)
    replica_mismatch: dict[str, float] = field(default_factory=dict)
    # Information: canonical variables whose initializer drew other values than the original's
    # (an unseeded graph); both then start from the original's values.
    initial_mismatch: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    final: dict[str, np.ndarray] = field(default_factory=dict)
    # Per variable, the single tower's own rounding noise, where measured (rounding_noise).
    rounding: dict[str, float] = field(default_factory=dict)

    def worst(self) -> tuple[str, float]:
        if not self.max_rel_diff:
            return "", 0.0
        name = max(self.max_rel_diff, key=self.max_rel_diff.get)
        return name, self.max_rel_diff[name]

    def allowed(self, variable: str, rtol: float = 1e-5) -> float:
        """The difference tolerated for `variable`: `rtol`, or ten times the single tower's own
        rounding noise where that is larger (Adam's update of a gradient that nearly cancels is
        about its sign: a few ulps of the gradient move it by a fraction of the learning rate)."""
        return max(rtol, ROUNDING_FACTOR * self.rounding.get(variable, 0.0))

    def excess(self, rtol: float = 1e-5) -> dict[str, float]:
        """The variables that differ by more than allowed(), with their difference."""
        return {v: d for v, d in self.max_rel_diff.items() if d > self.allowed(v, rtol)}

    def ok(self, rtol: float = 1e-5) -> bool:
        return not self.missing and not self.replica_mismatch and not self.excess(rtol)


ROUNDING_FACTOR = 10.0


def step_ordered(graph_def):
    """`graph_def` (a single-tower graph) with the reads of its step state ordered before the
    writes, as a rewrite orders them (see step_state): the step in which the read wins, so that
    it does not depend on timing either. The graph itself where nothing needs ordering."""
    from . import analysis, step_state
    from .io import GraphDef
    from .ir.graph import Graph
    from .ir.rewriter import Rewriter

    g = Graph(graph_def)
    info = analysis.analyze(g, describe=False)
    order = step_state.plan(g, info.variables, info.library, info.step)
    if not order.edges:
        return graph_def
    step_state.apply(Rewriter(g), order)
    return GraphDef.FromString(bytes(g.finish()))


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| (0 when both are zero): a per-variable relative error."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def replicas_of(present: Container[str], variable: str) -> list[str]:
    """The tower copies `tower{i}/<variable>` among the node names `present`."""
    out, i = [], 1
    while naming.tower_name(i, variable) in present:
        out.append(naming.tower_name(i, variable))
        i += 1
    return out


def compare(
    original_def,
    rewritten_def,
    num_devices: int,
    batches: list[dict[str, np.ndarray]],
    train_op: str,
    init_op: str,
    timeout_s: float = 600.0,
    target: str = "",
    config=None,
) -> Comparison:
    """Initialise both graphs, run one train step per batch, compare every variable.

    The original runs on one CPU, the rewrite on `num_devices` virtual CPUs, each on the same
    global batches, from the same values: after both inits, the original's values are loaded
    into the rewrite's canonical variables and replicas (so unseeded graphs compare); what the
    rewrite's init drew differently is reported in `initial_mismatch`, and replicas that init
    left unequal to their canonical variable in `replica_mismatch`. Canonical variables are
    compared with the original's; replicas with their canonical copy (exactly: they must stay
    bit-identical). With `target` (a server's grpc://host:port) the rewrite runs on that cluster
    instead, with `config`.
    """
    result = Comparison(steps=len(batches))
    with (
        Runner(original_def, 1, timeout_s) as single,
        Runner(rewritten_def, num_devices, timeout_s, target, config) as multi,
    ):
        single.run(init_op)
        multi.run(init_op)
        variables = list(single.readers)
        result.missing = [v for v in variables if v not in multi.readers]
        variables = [v for v in variables if v in multi.readers]
        replicas = {v: replicas_of(multi.readers, v) for v in variables}
        a = single.variables(variables)
        b = multi.variables(variables + [r for rs in replicas.values() for r in rs])
        for v in variables:
            d = rel_diff(b[v], a[v])
            if d > 0:
                result.initial_mismatch[v] = d
            for r in replicas[v]:
                if not np.array_equal(b[r], b[v]):
                    result.replica_mismatch[f"{r} (after init)"] = rel_diff(b[r], b[v])
        if result.initial_mismatch:
            multi.load({**{v: a[v] for v in variables}, **{r: a[v] for v in variables for r in replicas[v]}})
        for feeds in batches:
            single.run(train_op, feeds)
            multi.run(train_op, feeds)
        a = single.variables(variables)
        b = multi.variables(variables + [r for rs in replicas.values() for r in rs])
        for v in variables:
            result.final[v] = b[v]
            result.max_rel_diff[v] = rel_diff(b[v], a[v])
            for r in replicas[v]:
                if not np.array_equal(b[r], b[v]):
                    result.replica_mismatch[r] = rel_diff(b[r], b[v])
    return result


def rounding_noise(
    original_def, batches: list[dict[str, np.ndarray]], train_op: str, init_op: str, timeout_s: float = 600.0
) -> dict[str, float]:
    """How far each variable of the single tower moves, after the same steps, when every batch
    comes in another example order (reversed; rotated by half): the same step with its sums in
    another order, so the size of the rounding differences a rewrite may show too (feed every
    input as a batch). The largest over the orders."""
    orders = [lambda v: v, lambda v: v[::-1], lambda v: np.roll(v, len(v) // 2, axis=0)]
    finals = []
    start = None
    for order in orders:
        with Runner(original_def, 1, timeout_s) as single:
            single.run(init_op)
            if start is None:
                start = single.variables()
            else:  # an unseeded initializer draws anew: every order starts from the first's values
                single.load(start)
            for feeds in batches:
                single.run(train_op, {k: np.ascontiguousarray(order(v)) for k, v in feeds.items()})
            finals.append(single.variables())
    first = finals[0]
    return {v: max(rel_diff(f[v], first[v]) for f in finals[1:]) for v in first}


def repeated_runs(
    rewritten_def, num_devices: int, batches, train_op: str, init_op: str, runs: int, timeout_s: float = 600.0
) -> tuple[dict[str, float], dict[str, float]]:
    """Run the rewrite's steps `runs` times from the same initial values (loaded back before
    each run) and return (variable -> largest difference between runs, replica -> largest
    difference from its canonical variable in any run); both empty for a step that does not
    depend on timing."""
    varying: dict[str, float] = {}
    drifting: dict[str, float] = {}
    with Runner(rewritten_def, num_devices, timeout_s) as multi:
        multi.run(init_op)
        start = multi.variables()
        first = None
        for _ in range(runs):
            multi.load(start)
            for feeds in batches:
                multi.run(train_op, feeds)
            values = multi.variables()
            first = first or values
            for v, value in values.items():
                d = rel_diff(value, first[v])
                if d > 0:
                    varying[v] = max(d, varying.get(v, 0.0))
                for r in replicas_of(values, v):
                    if not np.array_equal(values[r], value):
                        drifting[r] = max(rel_diff(values[r], value), drifting.get(r, 0.0))
    return varying, drifting
