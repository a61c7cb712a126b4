"""Which inputs are the batch: each input's first dimension traced through TensorFlow's shape
inference on the single tower, split across the towers where it is the batch dimension, given
whole to every tower otherwise; never a guess (an undecided input is refused, naming the option).

How it is read. Every fed input of rank 1 or more is a candidate (a SparseTensor's indices, values
and dense shape are one candidate: its rows). The forward computation is imported once with every
candidate's first dimension unknown (the baseline), then once per candidate with only that
dimension set (its declared size, or a probe size for an unknown one; a sparse input's dense shape
becomes a constant with that many rows). Where a dimension is unknown in the baseline and equals
the probe size in the candidate's run, the candidate's first dimension lands there. Two candidates
whose landings share a (tensor, axis) meet: shape inference made them one dimension (elementwise
ops, losses, concatenation along other axes). A candidate that lands on axis a > 0 of a tensor
whose axis 0 another candidate lands on is inner to it (a mask over a sequence). The batch is the
group of meeting candidates that is inner to no other: the one holding an input of unknown first
dimension, or, in a graph of fixed sizes only, the largest group. Candidates outside it are
broadcast: their first dimension never meets the batch (gather tables, class weights, masks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
from tensorflow.core.framework import types_pb2

from . import opdefs
from .analysis import Input, TrainingGraph
from .errors import ConfigError, InvalidGraphError
from .ir import names
from .ir.graph import Graph, NodeDef
from .shapes import ShapeOracle

# The size a candidate of unknown first dimension is probed with: any size works (a landing must
# also be unknown in the baseline); this one divides by most small factors a reshape may ask.
PROBE_SIZE = 2**6 * 3**2 * 5 * 7
OPTION_HINT = "say which with the replicate pass's `split:`/`broadcast:` options (or --split/--broadcast)"


@dataclass(frozen=True)
class SparseInput:
    """A SparseTensor fed as three inputs: split by rows (indices re-based, shape per tower)."""

    indices: str
    values: str
    shape: str

    @property
    def members(self) -> tuple[str, str, str]:
        return (self.indices, self.values, self.shape)


@dataclass(frozen=True)
class Role:
    """What one input is: split across the towers or broadcast whole to each, and why."""

    name: str
    split: bool
    why: str
    sparse: SparseInput | None = None


@dataclass(frozen=True)
class BatchInputs:
    """The decision for every input the tower reads, in graph order."""

    roles: tuple[Role, ...] = ()
    sparse: tuple[SparseInput, ...] = ()
    drawn: dict[str, str] = field(default_factory=dict)  # per-tower input pipelines: their op

    @property
    def split(self) -> list[str]:
        return [r.name for r in self.roles if r.split]

    @property
    def broadcast(self) -> list[str]:
        return [r.name for r in self.roles if not r.split]

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)


@dataclass
class _Candidate:
    name: str  # the input (a sparse input: its dense shape)
    inputs: tuple[str, ...]  # the inputs it stands for
    size: int | None  # the declared first dimension
    sparse: SparseInput | None = None
    landings: frozenset = frozenset()
    pinned: str = ""  # shape inference refused the probe: its first dimension is fixed elsewhere
    unknown_rank: bool = False
    lost: str = ""  # where shape inference loses track of its first dimension


def decide(
    graph: Graph,
    analysis: TrainingGraph,
    shapes: ShapeOracle,
    split: Sequence[str] = (),
    broadcast: Sequence[str] = (),
) -> BatchInputs:
    """Decide which of the tower's inputs are split (see the module docstring).

    Args:
        graph, analysis, shapes: the single tower, its analysis and shape oracle.
        split, broadcast: inputs the user says are (not) the batch; a sparse input is named by any
            of its three parts.
    Raises:
        ConfigError: an option names no input the tower reads, names one input both ways, or
            contradicts the dataflow; or the graph leaves an input undecided.
    """
    inputs = {i.name: i for i in analysis.inputs}
    _check_named(inputs, split, "split")
    _check_named(inputs, broadcast, "broadcast")
    both = sorted(set(split) & set(broadcast))
    if both:
        raise ConfigError(f"input '{both[0]}' is named both to split and to broadcast")
    sparse = sparse_inputs(graph, inputs)
    in_sparse = {m: s for s in sparse for m in s.members}
    candidates: list[_Candidate] = []
    roles: dict[str, Role] = {}
    for s in sparse:
        candidates.append(_Candidate(s.shape, s.members, None, s))
    for i in analysis.inputs:
        if i.name in in_sparse:
            continue
        if i.shape is not None and not i.shape:
            if i.name in split:
                raise ConfigError(f"input '{i.name}' is a scalar: it has no batch to split")
            roles[i.name] = Role(i.name, False, "scalar")
        elif i.shape is None:
            candidates.append(
                _Candidate(i.name, (i.name,), None, pinned="its rank is unknown", unknown_rank=True)
            )
        else:
            candidates.append(_Candidate(i.name, (i.name,), i.static_batch))
    if candidates:
        _probe(graph, analysis, shapes, candidates)
    said = {n: True for n in split} | {n: False for n in broadcast}
    for c, split_it, why in _choose(candidates, said, inputs):
        for n in c.inputs:
            roles[n] = Role(n, split_it, why, c.sparse)
    order = [i.name for i in analysis.inputs]
    return BatchInputs(tuple(roles[n] for n in order), tuple(s for s in sparse if roles[s.shape].split))


def _check_named(inputs: dict[str, Input], named: Sequence[str], option: str) -> None:
    for n in named:
        if n not in inputs:
            valid = ", ".join(sorted(inputs)) or "none"
            raise ConfigError(f"{option}: '{n}' is not an input the training step reads; its inputs: {valid}")


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


def _placeholder(name: str, dtype: int, dims: list[int] | None) -> NodeDef:
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


def _probe(graph: Graph, analysis: TrainingGraph, shapes: ShapeOracle, candidates: list[_Candidate]) -> None:
    """Fill each candidate's landings (module docstring)."""
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
            baseline[n] = _placeholder(n, i.dtype, dims)
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
    # What the forward nodes read from outside them does not depend on the inputs: asked once.
    base = prober.shapes(
        baseline.values(), sorted(set(forward) | {names.node_of(t) for ts in reads.values() for t in ts})
    )
    for c in candidates:
        if c.pinned:
            continue
        size = c.size if c.size is not None else PROBE_SIZE
        variant = dict(baseline)
        if c.sparse is not None:
            i = inputs[c.sparse.shape]
            rank = i.shape[0] if i.shape and i.shape[0] >= 0 else _sparse_rank(inputs[c.sparse.indices])
            if rank is None:
                c.pinned = "its dense shape's rank is unknown"
                continue
            variant[c.name] = _rows_constant(c.name, i.dtype, rank, size)
        else:
            i = inputs[c.name]
            variant[c.name] = _placeholder(c.name, i.dtype, [size] + list(i.shape[1:]))
        try:
            mine = graph.descendants(c.inputs, through_control=False)
            run = prober.shapes(variant.values(), [*c.inputs, *(n for n in forward if n in mine)])
        except InvalidGraphError as e:
            c.pinned = str(e).removeprefix("TensorFlow cannot load the graph: ")
            continue
        landings = {(c.name, 0)} if c.sparse is None else set()
        for t, dims in run.items():
            before = base.get(t)
            if dims is None or before is None or len(before) != len(dims):
                continue
            for axis, (d, b) in enumerate(zip(dims, before, strict=True)):
                if d == size and b is None:
                    landings.add((t, axis))
        c.landings = frozenset(landings)
        c.lost = _lost(graph, forward, reads, {**base, **run}, {t for t, _ in landings})
        if c.sparse is not None and not c.lost:
            # A sparse input's rows are values of its indices, which shape inference never follows.
            index = names.tensor(c.sparse.indices, 0)
            c.lost = next((n for n in forward if index in reads[n]), "")


def _lost(graph: Graph, forward: list[str], reads: dict, run: dict, carrying: set[str]) -> str:
    """The first node where shape inference loses track of a dimension (a node that reads a
    tensor carrying it and keeps state, or whose inputs or outputs are not fully known), or ""."""
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


def _choose(candidates: list[_Candidate], said: dict[str, bool], inputs: dict[str, Input]):
    """(candidate, split, why) for every candidate."""
    meets = nx.Graph()
    meets.add_nodes_from(c.name for c in candidates)
    at: dict[tuple[str, int], list[str]] = {}
    for c in candidates:
        for spot in c.landings:
            at.setdefault(spot, []).append(c.name)
    where: dict[tuple[str, str], str] = {}
    for (t, _axis), owners in sorted(at.items()):
        for a in owners:
            for b in owners:
                if a < b and not meets.has_edge(a, b):
                    meets.add_edge(a, b)
                    where[a, b] = where[b, a] = t
    by_name = {c.name: c for c in candidates}
    axis0: dict[str, set[str]] = {}  # tensor -> candidates landing on its axis 0
    for (t, axis), owners in at.items():
        if axis == 0:
            axis0.setdefault(t, set()).update(owners)
    inner: dict[str, tuple[str, str]] = {}  # candidate -> (an outer candidate, the tensor)
    for (t, axis), owners in sorted(at.items()):
        if axis > 0:
            for o in owners:
                outer = sorted(axis0.get(t, set()) - {o})
                if outer and o not in inner:
                    inner[o] = (outer[0], t)
    groups = sorted((sorted(g) for g in nx.connected_components(meets)), key=lambda g: g[0])
    group_of = {n: tuple(g) for g in groups for n in g}

    def named(c: _Candidate) -> bool | None:
        votes = {said[n] for n in c.inputs if n in said}
        return votes.pop() if len(votes) == 1 else None

    def free(g) -> bool:  # inner to no other group, not pinned
        return not any(n in inner and group_of[inner[n][0]] != g for n in g) and not any(
            by_name[n].pinned for n in g
        )

    told = [g for g in groups if any(named(by_name[n]) for n in g)]
    open_groups = [g for g in groups if free(tuple(g)) and not all(named(by_name[n]) is False for n in g)]
    dynamic = [g for g in open_groups if any(by_name[n].size is None for n in g)]
    # A group whose dimension meets another input, or is lost to shape inference (a loop's
    # TensorArray, a tensor of unknown shape: meetings may hide there), is batch-like; a lone
    # input whose dimension provably vanishes (reduced away, meeting nothing) fits both ways.
    batch_like = [g for g in dynamic if len(g) > 1 or any(by_name[n].lost for n in g)]
    if told:
        batch = told + [g for g in batch_like if g not in told]
        undecided = [g for g in dynamic if g not in batch]
    elif dynamic:
        batch = batch_like or dynamic[:1]
        undecided = [g for g in dynamic if g not in batch]
        if sum(1 for g in batch if not any(by_name[n].lost for n in g)) > 1:
            undecided = batch
    elif open_groups:
        top = max(len(g) for g in open_groups)
        batch = [g for g in open_groups if len(g) == top]
        undecided = batch if len(batch) > 1 else []
    else:
        batch, undecided = [], []
    if undecided:
        listed = " or ".join(" + ".join(_label(by_name[n]) for n in g) for g in undecided)
        others = sorted({n for g in batch for n in g} - {n for g in undecided for n in g})
        if others:
            verb = "is a batch input" if len(undecided) == 1 else "are batch inputs"
            what = f"whether {listed} {verb} like {_label(by_name[others[0]])}"
        else:
            sizes = {by_name[n].size for g in undecided for n in g}
            fixed = (
                f"; a fixed batch of {sizes.pop()} baked into them hides it"
                if len(sizes) == 1 and None not in sizes
                else ""
            )
            what = f"which inputs are the batch: {listed} (their first dimensions never meet{fixed})"
        raise ConfigError(f"cannot tell {what}: the graph's shapes fit both ways; {OPTION_HINT}")
    in_batch = {n for g in batch for n in g}
    anchors = sorted(in_batch)
    for c in candidates:
        says = named(c)
        label = _label(c)
        if c.name in in_batch:
            if says and c.size is not None and batch_like and list(group_of[c.name]) not in batch_like:
                raise ConfigError(
                    f"split: input {label} cannot be the batch: its first dimension ({c.size}) never "
                    f"meets the batch of {_label(by_name[sorted(n for g in batch_like for n in g)[0]])}"
                )
            if (c.pinned or c.unknown_rank) and says is not True:
                raise ConfigError(
                    f"cannot tell whether input {label} is the batch ({c.pinned}); {OPTION_HINT}"
                )
            if c.name in inner and group_of[inner[c.name][0]] != group_of[c.name]:
                outer, t = inner[c.name]
                raise ConfigError(
                    f"split: input {label} cannot be the batch: its first dimension meets a later axis of "
                    f"'{t}', whose first axis is {_label(by_name[outer])}'s"
                )
            if says is False:
                partner = next((n for n in group_of[c.name] if n != c.name), None)
                if partner is not None:
                    t = where.get((c.name, partner), "?")
                    raise ConfigError(
                        f"broadcast: input {label} is the batch: its first dimension meets "
                        f"{_label(by_name[partner])}'s at '{t}'"
                    )
            peers = [n for n in group_of[c.name] if n != c.name]
            if says:
                why = "named to split"
            elif peers:
                why = f"meets {_label(by_name[peers[0]])} at '{where[c.name, peers[0]]}'"
            elif c.lost:
                why = f"declared with an unknown first dimension (shape inference loses it at '{c.lost}')"
            else:
                why = "the only batch-shaped input"
            yield c, True, why
            continue
        if says is True:
            raise ConfigError(
                f"split: input {label} cannot be the batch: {_not_batch(c, inner, by_name, anchors)}"
            )
        if says is False:
            yield c, False, "named to broadcast"
            continue
        if c.unknown_rank or (
            c.pinned and c.size is None and not any(by_name[n].size is None for n in in_batch)
        ):
            raise ConfigError(f"cannot tell whether input {label} is the batch ({c.pinned}); {OPTION_HINT}")
        yield c, False, _not_batch(c, inner, by_name, anchors)


def _not_batch(c: _Candidate, inner, by_name, anchors: list[str]) -> str:
    if c.name in inner:
        outer, t = inner[c.name]
        return f"its first dimension is a later axis of '{t}', whose first axis is {_label(by_name[outer])}'s"
    if c.pinned:
        return f"its first dimension is fixed by the graph ({c.pinned})"
    if anchors:
        return f"its first dimension never meets the batch of {_label(by_name[anchors[0]])}"
    return "no input's first dimension is the batch"


def _label(c: _Candidate) -> str:
    if c.sparse is not None:
        return f"sparse '{c.sparse.indices}'/'{c.sparse.values}'/'{c.sparse.shape}'"
    return f"'{c.name}'"


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
    advice = "build the model with a batch dimension of None"
    if len(sizes) > 1:
        raise ConfigError(
            f"split inputs declare different fixed batches ({', '.join(map(str, sizes))}); {advice}"
        )
    prober = shapes.prober(copied, fixed)

    def at(size: int) -> list[NodeDef]:
        return [_placeholder(n, i.dtype, [size] + list(i.shape[1:])) for n, i in fixed.items()]

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
