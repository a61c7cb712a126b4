"""Running graphs on K virtual CPU devices and comparing a rewrite with its single-tower original."""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import dtypes

from . import opdefs
from .ir import names

tf1 = tf.compat.v1


def session_config(num_cpus: int):
    """A v1 session config exposing /device:CPU:0..num_cpus-1 with strict placement."""
    return tf1.ConfigProto(device_count={"CPU": num_cpus}, allow_soft_placement=False)


class Runner:
    """One GraphDef imported into its own tf.Graph and Session, with readers for every variable.

    Every run has a deadline: a broken all-reduce (a collective missing one participant) would
    otherwise wait forever.
    """

    def __init__(self, graph_def, num_cpus: int = 1, timeout_s: float = 600.0, target: str = "", config=None):
        self.options = tf1.RunOptions(timeout_in_ms=int(timeout_s * 1000))
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.import_graph_def(graph_def, name="")
            self.readers: dict[str, tf.Tensor] = {}
            for node in graph_def.node:
                if not opdefs.is_variable_op(node.op):
                    continue
                out = self.graph.get_tensor_by_name(node.name + ":0")
                if opdefs.is_resource_variable_op(node.op):
                    with tf1.device(node.device), tf1.name_scope(None):
                        out = tf.raw_ops.ReadVariableOp(
                            resource=out,
                            dtype=dtypes.as_dtype(node.attr["dtype"].type),
                            name=f"graphpass_read/{node.name}",
                        )
                self.readers[node.name] = out
        self._nodes = {n.name: n for n in graph_def.node if opdefs.is_variable_op(n.op)}
        self._loaders: dict[str, tuple] = {}
        self.session = tf1.Session(target, graph=self.graph, config=config or session_config(num_cpus))

    def run(self, fetches, feeds: dict[str, np.ndarray] | None = None):
        feed_dict = {
            self.graph.get_tensor_by_name(names.tensor(*names.parse(k)[:2]) + ":0" if ":" not in k else k): v
            for k, v in (feeds or {}).items()
        }
        return self.session.run(fetches, feed_dict=feed_dict, options=self.options)

    def variables(self, which: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        keys = list(self.readers) if which is None else list(which)
        values = self.session.run([self.readers[k] for k in keys], options=self.options)
        return dict(zip(keys, values, strict=True))

    def load(self, values: dict[str, np.ndarray]) -> None:
        """Set variables to `values` (by name), through assign ops made on first use."""
        feeds, ops = {}, []
        for name, value in values.items():
            if name not in self._loaders:
                node = self._nodes[name]
                dtype = dtypes.as_dtype(opdefs.dtype_attr(node, "dtype"))
                with self.graph.as_default(), tf1.device(node.device), tf1.name_scope(None):
                    fed = tf1.placeholder(dtype, name=f"graphpass_load/{name}/value")
                    var = self.graph.get_tensor_by_name(name + ":0")
                    if opdefs.is_resource_variable_op(node.op):
                        op = tf.raw_ops.AssignVariableOp(
                            resource=var, value=fed, name=f"graphpass_load/{name}"
                        )
                    else:
                        op = tf1.assign(var, fed, validate_shape=False, name=f"graphpass_load/{name}").op
                self._loaders[name] = (fed, op)
            fed, op = self._loaders[name]
            feeds[fed] = value
            ops.append(op)
        self.session.run(ops, feed_dict=feeds, options=self.options)

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class Comparison:
    """The outcome of running an original and its rewrite side by side."""

    steps: int
    max_rel_diff: dict[str, float] = field(default_factory=dict)
    replica_mismatch: dict[str, float] = field(default_factory=dict)
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
        return (
            not self.missing
            and not self.replica_mismatch
            and not self.initial_mismatch
            and not self.excess(rtol)
        )


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
    while names.tower_name(i, variable) in present:
        out.append(names.tower_name(i, variable))
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
    global batches. Canonical variables are compared with the original's; replicas with their
    canonical copy (exactly: they must stay bit-identical). With `target` (a server's
    grpc://host:port) the rewrite runs on that cluster instead, with `config`.
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
        a, b = single.variables(variables), multi.variables(variables)
        for v in variables:
            d = rel_diff(b[v], a[v])
            if d > 0:
                result.initial_mismatch[v] = d
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
    for order in orders:
        with Runner(original_def, 1, timeout_s) as single:
            single.run(init_op)
            for feeds in batches:
                single.run(train_op, {k: np.ascontiguousarray(order(v)) for k, v in feeds.items()})
            finals.append(single.variables())
    first = finals[0]
    return {v: max(rel_diff(f[v], first[v]) for f in finals[1:]) for v in first}


def random_batches(
    feeds: dict[str, dict],
    batch: int,
    steps: int,
    seed: int = 0,
    int_high: Callable[[str], int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """`steps` random global batches for feeds given as {name: {shape, dtype, classes}}."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        batch_feeds = {}
        for name, spec in feeds.items():
            shape = [batch if d is None or d < 0 else d for d in spec["shape"]]
            dtype = np.dtype(spec["dtype"])
            if dtype == np.bool_:
                batch_feeds[name] = rng.integers(0, 2, size=shape).astype(dtype)
            elif np.issubdtype(dtype, np.integer):
                high = spec.get("classes") or (int_high(name) if int_high else 2)
                batch_feeds[name] = rng.integers(0, high, size=shape).astype(dtype)
            else:
                batch_feeds[name] = rng.standard_normal(shape).astype(dtype)
        out.append(batch_feeds)
    return out


# -- verifying a rewrite -------------------------------------------------------------------------


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


def tower_count(graph_def) -> int:
    """How many towers a rewritten graph has (0 for a single-tower graph)."""
    found = set()
    for node in graph_def.node:
        m = _TOWER.match(node.name)
        if m:
            found.add(int(m.group(1)))
    return max(found) + 1 if found else 0


_TOWER = re.compile(r"^tower(\d+)/")


def on_cpus(graph_def, towers: int):
    """A copy of a rewritten graph with tower i's device mapped to /device:CPU:i and every other
    device to /device:CPU:0, so it runs in one process on virtual CPUs."""
    from collections import Counter

    per_tower: dict[int, Counter] = {}
    for node in graph_def.node:
        m = _TOWER.match(node.name)
        if m:
            per_tower.setdefault(int(m.group(1)), Counter())[node.device] += 1
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


def _feed_specs(analysis_result) -> dict[str, dict]:
    specs = {}
    for inp in analysis_result.inputs:
        if inp.op != "Placeholder" and not inp.batched:
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
        original, rewritten: GraphDefs.
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
    from . import analysis
    from .errors import GraphpassError, InternalError
    from .ir import verify
    from .ir.graph import Graph

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
    specs = _feed_specs(info)
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
