"""Which inputs are the batch: split across the towers where an input's first dimension is the
batch dimension, given whole to every tower otherwise; never a guess (an undecided input is
refused, naming the option).

Inputs whose first dimensions meet (batch_dims: their landings share a tensor and axis: an
elementwise op or a loss makes them one dimension) form a group. A candidate that lands on axis
a > 0 of a tensor whose axis 0 another candidate lands on is inner to it (a mask over a sequence).
The batch is the group that is inner to no other and holds an input of unknown first dimension
(TF1's `[None, ...]`), where it meets another input or where shape inference loses it (meetings
may hide there); in a graph of fixed sizes only, the largest group. Candidates outside it are
broadcast: their first dimension never meets the batch (gather tables, class weights, masks). A
lone input whose dimension provably vanishes (reduced away, meeting nothing) beside the batch
fits both ways: refused, naming it and the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

from .analysis import Input, TrainingGraph
from .batch_dims import Candidate, SparseInput, probe, sparse_inputs
from .errors import ConfigError
from .ir import names
from .ir.graph import Graph
from .shapes import ShapeOracle

__all__ = ["BatchInputs", "Role", "SparseInput", "decide"]

OPTION_HINT = "say which with the replicate pass's `split:`/`broadcast:` options (or --split/--broadcast)"


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
    # (tensor, axis) where the split inputs' first dimension lands in the single tower's shapes
    batch_axes: frozenset = frozenset()

    @property
    def split(self) -> list[str]:
        return [r.name for r in self.roles if r.split]

    @property
    def broadcast(self) -> list[str]:
        return [r.name for r in self.roles if not r.split]

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)


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
    candidates: list[Candidate] = []
    roles: dict[str, Role] = {}
    for s in sparse:
        candidates.append(Candidate(s.shape, s.members, None, s))
    for i in analysis.inputs:
        if i.name in in_sparse:
            continue
        if i.shape is not None and not i.shape:
            if i.name in split:
                raise ConfigError(f"input '{i.name}' is a scalar: it has no batch to split")
            roles[i.name] = Role(i.name, False, "scalar")
        elif i.shape is None:
            candidates.append(
                Candidate(i.name, (i.name,), None, pinned="its rank is unknown", unknown_rank=True)
            )
        else:
            candidates.append(Candidate(i.name, (i.name,), i.static_batch))
    lone = len(candidates) == 1 and candidates[0].sparse is None and candidates[0].size is None
    if candidates and not (lone and not candidates[0].unknown_rank and not split and not broadcast):
        # A lone `[None, ...]` input is the batch whatever its dimension meets: nothing to probe.
        probe(graph, analysis, shapes, candidates)
    said = {n: True for n in split} | {n: False for n in broadcast}
    position = {n: i for i, n in enumerate(graph.names())}
    for c, split_it, why in _choose(candidates, said, inputs, position):
        for n in c.inputs:
            roles[n] = Role(n, split_it, why, c.sparse)
    order = [i.name for i in analysis.inputs]
    axes = frozenset(spot for c in candidates if roles[c.inputs[0]].split for spot in c.landings)
    return BatchInputs(
        tuple(roles[n] for n in order), tuple(s for s in sparse if roles[s.shape].split), batch_axes=axes
    )


def _check_named(inputs: dict[str, Input], named: Sequence[str], option: str) -> None:
    for n in named:
        if n not in inputs:
            valid = ", ".join(sorted(inputs)) or "none"
            raise ConfigError(f"{option}: '{n}' is not an input the training step reads; its inputs: {valid}")


def _choose(candidates: list[Candidate], said: dict[str, bool], inputs: dict[str, Input], position: dict):
    """(candidate, split, why) for every candidate; `position`: each node's place in the graph,
    so a meeting is named where it first happens."""
    meets = nx.Graph()
    meets.add_nodes_from(c.name for c in candidates)
    at: dict[tuple[str, int], list[str]] = {}
    for c in candidates:
        for spot in c.landings:
            at.setdefault(spot, []).append(c.name)
    where: dict[tuple[str, str], str] = {}
    spots = sorted(at.items(), key=lambda kv: (position.get(names.node_of(kv[0][0]), -1), kv[0]))
    for (t, _axis), owners in spots:
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
    for (t, axis), owners in spots:
        if axis > 0:
            for o in owners:
                outer = sorted(axis0.get(t, set()) - {o})
                if outer and o not in inner:
                    inner[o] = (outer[0], t)
    groups = sorted((sorted(g) for g in nx.connected_components(meets)), key=lambda g: g[0])
    group_of = {n: tuple(g) for g in groups for n in g}

    def named(c: Candidate) -> bool | None:
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
                    f"'{t}', whose first axis is the first dimension of {_label(by_name[outer])}"
                )
            if says is False:
                partner = next((n for n in group_of[c.name] if n != c.name), None)
                if partner is not None:
                    t = where.get((c.name, partner), "?")
                    raise ConfigError(
                        f"broadcast: input {label} is the batch: its first dimension meets that of "
                        f"{_label(by_name[partner])} at '{t}'"
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


def _not_batch(c: Candidate, inner, by_name, anchors: list[str]) -> str:
    if c.name in inner:
        outer, t = inner[c.name]
        return (
            f"its first dimension is a later axis of '{t}', whose first axis is the first dimension of "
            f"{_label(by_name[outer])}"
        )
    if c.pinned:
        return f"its first dimension is fixed by the graph ({c.pinned})"
    if anchors:
        return f"its first dimension never meets the batch of {_label(by_name[anchors[0]])}"
    return "no input's first dimension is the batch"


def _label(c: Candidate) -> str:
    if c.sparse is not None:
        return f"sparse '{c.sparse.indices}'/'{c.sparse.values}'/'{c.sparse.shape}'"
    return f"'{c.name}'"
