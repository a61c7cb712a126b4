"""Where each input's first dimension goes in the single tower, read from TensorFlow's shape
inference: the forward computation is imported once with every candidate input's first dimension
unknown (the baseline), then once per candidate with only that dimension set (its declared size,
or a probe size; a sparse input's dense shape becomes a constant with that many rows). Where a
dimension is unknown in the baseline and equals the probe size in the candidate's run, the
candidate's first dimension lands there; where a node reading it keeps state or leaves shapes
unknown (a loop's TensorArray, a tensor of unknown shape), shape inference loses it. Also: the
SparseTensors among the inputs, and fixed batches the tower carries in its shapes and constants.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tensorflow.core.framework import types_pb2

from . import opdefs
from .analysis import Input, TrainingGraph
from .errors import ConfigError, InvalidGraphError
from .ir import names
from .ir.graph import Graph, NodeDef
from .shapes import Probe, ShapeOracle

# The size a candidate of unknown first dimension is probed with: any size works (a landing must
# also be unknown in the baseline); this one divides by most small factors a reshape may ask.
PROBE_SIZE = 2**6 * 3**2 * 5 * 7


@dataclass(frozen=True)
class SparseInput:
    """A SparseTensor fed as three inputs: split by rows (indices re-based, shape per tower)."""

    indices: str
    values: str
    shape: str

    @property
    def members(self) -> tuple[str, str, str]:
        return (self.indices, self.values, self.shape)


@dataclass
class Candidate:
    """An input (or the three of a sparse input) whose first dimension may be the batch."""

    name: str  # the input (a sparse input: its dense shape)
    inputs: tuple[str, ...]  # the inputs it stands for
    size: int | None  # the declared first dimension
    sparse: SparseInput | None = None
    landings: frozenset = frozenset()
    pinned: str = ""  # shape inference refused the probe: its first dimension is fixed elsewhere
    unknown_rank: bool = False
    lost: str = ""  # where shape inference loses track of its first dimension


def sparse_inputs(graph: Graph, inputs: dict[str, Input]) -> list[SparseInput]:
    """SparseTensors among the inputs: three inputs an op reads as one sparse argument (its OpDef
    names them ..indices, ..values and ..shape), read directly or through identities."""
    found: dict[tuple[str, str, str], SparseInput] = {}
    readers = sorted({u for n in inputs for u in graph.users(n)})
    for r in readers:
        node = graph.node(r)
        if not opdefs.is_registered(node.op):
            continue
        args = opdefs.input_arg_positions(node)
        parts: dict[str, dict[str, str]] = {}
        for arg, ref in zip(args, node.input, strict=False):
            if ref[:1] == "^":
                break
            for part in ("indices", "values", "shape"):
                if arg.endswith(part):
                    prefix = arg[: -len(part)]
                    parts.setdefault(part, {})[prefix] = names.node_of(ref)
        if len(parts) < 3:
            continue
        pairs = _sparse_args(parts)
        for ind, val, shp in pairs:
            if all(n in inputs for n in (ind, val, shp)) and len({ind, val, shp}) == 3:
                found.setdefault((ind, val, shp), SparseInput(ind, val, shp))
    taken: set[str] = set()
    out = []
    for key in sorted(found):
        if taken.isdisjoint(key):
            taken.update(key)
            out.append(found[key])
    return out


def _sparse_args(parts: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """(indices, values, shape) producers of one op's sparse arguments: one of each, or matched
    by their common prefix (`a_indices`, `a_values`, `a_shape`)."""
    ind, val, shp = parts["indices"], parts["values"], parts["shape"]
    if len(ind) == len(val) == len(shp) == 1:
        return [(next(iter(ind.values())), next(iter(val.values())), next(iter(shp.values())))]
    return [(ind[p], val[p], shp[p]) for p in sorted(ind) if p in val and p in shp]


def placeholder(name: str, dtype: int, dims: list[int] | None) -> NodeDef:
    node = NodeDef(name=name, op="Placeholder")
    node.attr["dtype"].type = dtype
    if dims is None:
        node.attr["shape"].shape.unknown_rank = True
    else:
        for d in dims:
            node.attr["shape"].shape.dim.add().size = -1 if d is None else d
    return node


def _rows_constant(name: str, dtype: int, rank: int, rows: int) -> NodeDef:
    node = NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype
    t = node.attr["value"].tensor
    t.dtype = dtype
    t.tensor_shape.dim.add().size = rank
    values = [rows] + [-1] * (rank - 1)  # -1: an unknown dimension to shape functions
    (t.int64_val if dtype == types_pb2.DT_INT64 else t.int_val).extend(values)
    return node


def probe(graph: Graph, analysis: TrainingGraph, shapes: ShapeOracle, candidates: list[Candidate]) -> None:
    """Fill each candidate's landings, and where shape inference loses it (module docstring);
    a candidate whose probe TensorFlow refuses is `pinned` (a fixed size elsewhere meets it)."""
    inputs = {i.name: i for i in analysis.inputs}
    baseline: dict[str, NodeDef] = {}
    for c in candidates:
        for n in c.inputs:
            i = inputs[n]
            dims = (
                None
                if i.shape is None
                else [None if c.sparse is None and k == 0 else d for k, d in enumerate(i.shape)]
            )
            baseline[n] = placeholder(n, i.dtype, dims)
    roots = [n for c in candidates for n in c.inputs]
    raw = {names.node_of(g.tensor) for g in analysis.gradients}
    after_cut = graph.descendants(raw)
    forward = sorted(
        n
        for n in graph.descendants(roots, through_control=False)
        if n not in analysis.backward.nodes and n not in after_cut and n not in inputs
    )
    reads = {
        n: [names.tensor(*names.parse(r)[:2]) for r in graph.node(n).input if r[:1] != "^"] for n in forward
    }
    prober = shapes.prober(forward, baseline)
    mine = {c.name: graph.descendants(c.inputs, through_control=False) for c in candidates}
    reached = Counter(n for c in candidates for n in mine[c.name])
    # Shapes are read first where two candidates' dimensions can meet (what both reach); then,
    # from the same imports, all a candidate reaches, for one that meets none there (its
    # dimension may be lost on its way) or has a fixed size (its landings decide merges).
    shared = [n for n in forward if reached[n] > 1]
    base_probe = _baseline(prober, baseline)
    probes: dict[str, Probe] = {}
    try:
        base = base_probe.shapes(_with_reads(shared, reads))
        for c in candidates:
            p = _start(c, prober, baseline, inputs)
            if p is not None:
                probes[c.name] = p
                _land(c, p.shapes([*c.inputs, *(n for n in shared if n in mine[c.name])]), base)
        alone = [
            c for c in candidates if c.name in probes and (c.size is not None or not _meets(c, candidates))
        ]
        if alone:
            nodes = [n for n in forward if any(n in mine[c.name] for c in alone)]
            base = base_probe.shapes(_with_reads(nodes, reads))
            for c in alone:
                run = probes[c.name].shapes(n for n in forward if n in mine[c.name])
                _land(c, run, base)
                c.lost = _lost(graph, forward, reads, {**base, **run}, c.landings)
                if c.sparse is not None and not c.lost:
                    # A sparse input's rows are values of its indices, which shape inference never follows.
                    index = names.tensor(c.sparse.indices, 0)
                    c.lost = next((n for n in forward if index in reads[n]), "")
    finally:
        for p in [base_probe, *probes.values()]:
            p.close()


def _with_reads(nodes: list[str], reads: dict) -> list[str]:
    return sorted(set(nodes) | {names.node_of(t) for n in nodes for t in reads[n]})


def _baseline(prober, baseline: dict[str, NodeDef]) -> Probe:
    """The variant with every candidate's first dimension unknown."""
    try:
        return prober.run(baseline.values())
    except InvalidGraphError as e:
        said = str(e).removeprefix("TensorFlow cannot load the graph: ")
        raise InvalidGraphError(
            f"TensorFlow's shape inference refuses the graph with its inputs' first dimensions unknown, "
            f"so graphpass cannot trace which inputs are the batch: {said}"
        ) from None


def _size(c: Candidate) -> int:
    return c.size if c.size is not None else PROBE_SIZE


def _start(c: Candidate, prober, baseline: dict, inputs: dict) -> Probe | None:
    """The variant where only `c`'s first dimension is set, or None with `c.pinned` saying why."""
    if c.pinned:
        return None
    variant = dict(baseline)
    if c.sparse is not None:
        i = inputs[c.sparse.shape]
        rank = i.shape[0] if i.shape and i.shape[0] >= 0 else _sparse_rank(inputs[c.sparse.indices])
        if rank is None:
            c.pinned = "its dense shape's rank is unknown"
            return None
        variant[c.name] = _rows_constant(c.name, i.dtype, rank, _size(c))
    else:
        i = inputs[c.name]
        variant[c.name] = placeholder(c.name, i.dtype, [_size(c)] + list(i.shape[1:]))
    try:
        return prober.run(variant.values())
    except InvalidGraphError as e:
        c.pinned = str(e).removeprefix("TensorFlow cannot load the graph: ")
        return None


def _land(c: Candidate, run: dict, base: dict) -> None:
    """`c.landings`: where a dimension unknown in the baseline is `c`'s size in its run."""
    size = _size(c)
    landings = {(c.name, 0)} if c.sparse is None else set()
    for t, dims in run.items():
        before = base.get(t)
        if dims is None or before is None or len(before) != len(dims):
            continue
        for axis, (d, b) in enumerate(zip(dims, before, strict=True)):
            if d == size and b is None:
                landings.add((t, axis))
    c.landings = frozenset(landings)


def _meets(c: Candidate, candidates: list[Candidate]) -> bool:
    return any(d is not c and not c.landings.isdisjoint(d.landings) for d in candidates)


def _lost(graph: Graph, forward: list[str], reads: dict, run: dict, landings) -> str:
    """The first node where shape inference loses track of a candidate's dimension (a node that
    reads a tensor carrying it and keeps state, or whose inputs or outputs are not fully known),
    or ""."""
    carrying = {t for t, _ in landings}
    outputs: dict[str, list] = {}
    for t, dims in run.items():
        outputs.setdefault(names.node_of(t), []).append(dims)
    for n in forward:
        if not carrying.intersection(reads[n]):
            continue
        if opdefs.is_stateful(graph.node(n).op):
            return n
        for dims in [run.get(t, []) for t in reads[n]] + outputs.get(n, []):
            if dims is None or None in dims:
                return n
    return ""


def _sparse_rank(indices: Input) -> int | None:
    if indices.shape and len(indices.shape) == 2 and indices.shape[1] >= 0:
        return indices.shape[1]
    return None


def check_fixed_batch(
    graph: Graph, shapes: ShapeOracle, split: dict[str, Input], copied: Sequence[str], k: int
) -> None:
    """Refuse a fixed batch (inputs declared `[B, ...]`, split into B/K per tower) that the tower's
    copied nodes (`copied`) carry elsewhere than in the split inputs: each tower computes with
    B/K examples, so a shape, size or factor of B baked into the graph (a reshape target, a mean's
    gradient) would be wrong there. Shape inference with the split inputs at B and at B/K tells
    where dimensions follow the inputs; a dimension of B that does not follow them, and a constant
    holding a multiple of B, cannot be told from the batch.

    Raises:
        ConfigError: naming the node (graphpass does not rewrite such constants yet).
    """
    fixed = {n: i for n, i in split.items() if i.static_batch is not None}
    for n, i in fixed.items():
        if i.static_batch % k:
            raise ConfigError(
                f"placeholder '{n}' has a fixed batch of {i.static_batch}, which does not divide "
                f"across {k} towers"
            )
    if k == 1 or not fixed:
        return
    sizes = sorted({i.static_batch for i in fixed.values()})
    b = sizes[0]
    first = sorted(fixed)[0]
    hint = f"the fixed batch of {b} ('{first}'), split {b // k} per tower"
    advice = (
        "build the model with a batch dimension of None, or give each tower the fixed batch "
        "(replicate: {fixed_batch: per_tower})"
    )
    if len(sizes) > 1:
        raise ConfigError(
            f"split inputs declare different fixed batches ({', '.join(map(str, sizes))}); {advice}"
        )
    prober = shapes.prober(copied, fixed)

    def at(size: int) -> list[NodeDef]:
        return [placeholder(n, i.dtype, [size] + list(i.shape[1:])) for n, i in fixed.items()]

    declared = prober.shapes(at(b))
    try:
        per_tower = prober.shapes(at(b // k))
    except InvalidGraphError as e:
        said = str(e).removeprefix("TensorFlow cannot load the graph: ")
        said = re.sub(r"'\{\{node ([^}]+)\}\} = [^']*'", r"'\1'", said).rstrip(".")
        raise ConfigError(f"the graph carries {hint}, in its shapes: {said}; {advice}") from None
    for t, dims in declared.items():
        after = per_tower.get(t)
        if dims is None or after is None or len(after) != len(dims):
            continue
        for axis, (d, e) in enumerate(zip(dims, after, strict=True)):
            if d == b and e == b:
                raise ConfigError(
                    f"dimension {axis} of '{t}' is {b} whatever the batch: it may be {hint} baked into "
                    f"the graph, or a size that equals it; {advice}"
                )
    for n in copied:
        node = graph.node(n)
        if node.op != "Const":
            continue
        value = _small_values(node)
        if any(_multiple_of(v, b) for v in value):
            raise ConfigError(
                f"constant '{n}' holds a multiple of {hint}: it may be a size or a factor of the batch "
                f"(a mean's gradient divides by it); {advice}"
            )


def _small_values(node: NodeDef, limit: int = 64) -> list[float]:
    from tensorflow.python.framework import tensor_util

    t = node.attr["value"].tensor
    n = 1
    for d in t.tensor_shape.dim:
        n *= d.size
    if n > limit or t.dtype in (types_pb2.DT_STRING, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT):
        return []
    try:
        return [float(v) for v in tensor_util.MakeNdarray(t).reshape(-1)]
    except (TypeError, ValueError):
        return []


def _multiple_of(v: float, b: int) -> bool:
    """Whether `v` is b * m or 1 / (b * m) for a whole m >= 1."""
    for x in (v, 1.0 / v if v else 0.0):
        if x >= b and abs(x / b - round(x / b)) < 1e-6:
            return True
    return False


def check_outside(graph: Graph, fixed: dict[str, Input], outside: Sequence[str], k: int) -> None:
    """With each tower at the fixed batch B and the inputs at K x B (fixed_batch: per_tower), the
    towers stay as built, but what reads the inputs or the towers' merged outputs outside them
    (`outside`: metrics, summaries) sees K x B: refuse a constant there, or a shape attr, that
    holds a multiple of B (it would be one tower's batch).

    Raises:
        ConfigError: naming the node.
    """
    b = next(iter(fixed.values())).static_batch
    if any(i.static_batch != b for i in fixed.values()):
        sizes = ", ".join(sorted({str(i.static_batch) for i in fixed.values()}))
        raise ConfigError(f"split inputs declare different fixed batches ({sizes})")
    hint = (
        f"the fixed batch of {b} ('{sorted(fixed)[0]}'), which the graph outside the towers reads as {k * b}"
    )
    for n in outside:
        node = graph.node(n)
        consts = [p for p in graph.producers(n)[0] if graph.node(p).op == "Const"]
        for c in consts:
            if any(_multiple_of(v, b) for v in _small_values(graph.node(c))):
                raise ConfigError(f"constant '{c}' (read by '{n}') holds a multiple of {hint}")
        for key, value in sorted(node.attr.items()):
            dims = [d.size for d in value.shape.dim] if value.HasField("shape") else []
            if any(d > 0 and d % b == 0 for d in dims):
                raise ConfigError(f"attr '{key}' of '{n}' holds a multiple of {hint}")
