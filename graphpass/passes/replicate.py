"""replicate: copy the tower K times, split the inputs' batch, and leave one reduction per gradient.

Regions of the single-tower graph (README: "What the rewritten graph is"):
- tower: what computes the raw gradients from the batch (or, in replicated mode, from a replicated
  variable), with the stateless helpers it reads (constants, shapes) and its dead backward ends.
  Copied per tower as `tower{i}/<name>` on device i; writes to untrained variables on that path
  (BatchNorm statistics) run in tower 0 only.
- update (replicated mode only): post-processing and the optimizer's updates, copied per tower so
  each tower updates its own replica with the reduced gradient.
- global: everything else (init, saver, step counter, summaries, losses off the gradient path).
  It keeps its names; where it read a tower tensor it reads the towers' copies merged (mean of
  scalars, concatenation of batches) under the original name.

Order of work: decide regions, devices, replica and copy names, sinks and merges while the
originals are intact (everything that asks who reads whom); then build every tower at the end, in
bulk: one template tower per digit count (tower 1, 10, ...) and the nodes of tower 0 that read
differently from the others through per-node plans; every other tower, and the rest of tower 0,
as blocks of the template's bytes renamed at output time (graphpass/ir/templates.py). Tower i
reads its shard of an input as `tower{i}/<input>`, so towers differ only in their prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tensorflow.core.framework import types_pb2

from .. import devices as devmod
from .. import gradients, opdefs, placement, step_state
from ..analysis import INPUT_OPS
from ..context import Reduction, RewriteContext
from ..errors import ConfigError, InvalidGraphError
from ..io import MAX_GRAPH_BYTES
from ..ir import names
from ..ir.graph import NodeDef
from ..ir.rewriter import bool_attr, int_attr, type_attr, type_list_attr
from .base import Pass, PassResult, option

FLOAT_TYPES = (types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_DOUBLE, types_pb2.DT_BFLOAT16)
INT_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)
OUTPUT_SHAPES = "_output_shapes"
# Names that identify a run-time object and must differ between towers: a v1 while loop's frame
# (towers sharing a frame name would share one loop), and explicitly named stacks/TensorArrays.
PER_TOWER_NAME_ATTRS = ("frame_name", "stack_name", "tensor_array_name")
# Towers after the first of each digit count are copies of a template tower, kept as its bytes
# (ir/towers.py). Tests turn it off to build every tower from the plans, and compare.
COPY_TOWERS = True


@dataclass
class _Template:
    """A tower made from plans that the towers with as many digits copy as bytes."""

    index: int
    names: list[str]  # its nodes, in order: replicas and mirrors, then the members
    bases: frozenset[str]  # their names without the tower prefix
    extras: int  # how many replicas and mirrors
    renamed: list  # per node, the attrs whose value begins with the tower's prefix
    snapshot: object = None  # the IR's template (ir/towers.py), made once
    slots: list | None = None  # per node, what its copies' devices depend on


@dataclass(frozen=True)
class Replicate(Pass):
    name = "replicate"
    summary = "copy the tower onto every device and split the input batch across them"

    mode: Literal["replicated", "parameter_server"] = option(
        "replicated",
        "replicated: a copy of every trainable variable per tower, all-reduced gradients; "
        "parameter_server: one copy of each variable, gradients aggregated once",
    )
    ps_device: str | None = option(
        None,
        "parameter_server mode: the device that holds the variables (default: the cluster's first ps "
        "task, else the first tower's device)",
    )
    check_batch: bool = option(
        True, "add a run-time check that the global batch divides evenly across the towers"
    )
    shared_updates: Literal["tower0", "mean"] = option(
        "tower0",
        "variables updated from tower data but not trained (BatchNorm moving statistics): from "
        "tower 0's statistics, or from their mean over the towers",
    )
    share_constants_over: int = option(
        1 << 20,
        "constants of more bytes than this are not copied per tower; every tower reads the one copy",
    )

    def run(self, ctx: RewriteContext) -> PassResult:
        if ctx.mode is not None:
            raise ConfigError("the graph is already replicated: 'replicate' may appear once in a pipeline")
        ps = devmod.canonical(self.ps_device) if self.ps_device else None
        if ps and self.mode != "parameter_server":
            raise ConfigError("replicate: ps_device applies to mode: parameter_server only")
        if self.share_constants_over < 0:
            raise ConfigError("replicate: share_constants_over must be 0 or more")
        replicator = _Replicator(ctx, self, ps)
        replicator.run()
        ctx.mode = self.mode
        a = ctx.analysis
        k = ctx.num_towers
        ordered = step_state.describe(replicator.ordered)
        return PassResult(
            True,
            f"{k} towers ({self.mode}), {len(a.trainable)} trainable variables, "
            f"{len(ctx.pending)} gradients to reduce" + (f"; {ordered}" if ordered else ""),
            {"towers": k, "mode": self.mode, "ordered_state": list(replicator.ordered.state)},
        )


class _Replicator:
    """One run of the replicate pass over one graph (its state lives only as long as the run)."""

    def __init__(self, ctx: RewriteContext, options: Replicate, ps_device: str | None):
        self.shared_updates = options.shared_updates
        self.share_constants_over = options.share_constants_over
        mode, check_batch = options.mode, options.check_batch
        self.ctx = ctx
        self.g = ctx.graph
        self.rw = ctx.rewriter
        self.a = ctx.analysis
        self.devices = ctx.devices
        self.k = len(ctx.devices)
        self.replicated = mode == "replicated"
        self.ps_device = ps_device
        self.check_batch = check_batch
        self.variables = self.a.variables
        self.state = set(self.a.replicated_state) if self.replicated else set()
        self.batched = {i.name: i for i in self.a.batched_inputs}
        self.raw = {g.tensor: g for g in self.a.gradients}
        self.raw_nodes = {names.node_of(t) for t in self.raw}
        self.shards: dict[str, str] = {}
        self.sinks: dict[str, list[str]] = {}
        self.tower0_only: set[str] = set()
        self.tower_means: dict[str, str] = {}
        self._hosts = {d: devmod.host_of(d) for d in self.devices}
        self._types = {d: devmod.device_type(d) for d in self.devices}
        self._kernel_ok: dict[tuple, bool] = {}
        self._group_ok: dict[tuple, bool] = {}
        self.cloned: set[str] = set()
        self.original = set(self.g.names())
        self.merge_needed: dict[str, set[int]] = {}
        self.ran: dict[tuple[str, int, int], str] = {}

    # -- regions ---------------------------------------------------------------------------
    def _regions(self) -> None:
        g = self.g

        # Shared by all towers: variables, placeholders (split or shared), big constants, and
        # persistent resources (stateful ops without inputs: tables, queues, iterators). Every
        # other op is copied per tower.
        shared = set(self.variables) | set(self.batched)
        for n, node in zip(g.names(), g.nodes(), strict=True):
            op = node.op
            if (
                op in INPUT_OPS  # feed points: a scalar (learning rate, flag) is shared
                or (op == "Const" and node.attr["value"].tensor.ByteSize() > self.share_constants_over)
                or (opdefs.is_stateful(op) and not any(r[:1] != "^" for r in node.input))
            ):
                shared.add(n)
        excluded = shared.__contains__

        roots = [u.name for u in self.a.updates] if self.replicated else sorted(self.raw_nodes)
        if self.replicated:
            # Every write of replicated state that the step makes after its updates (zeroing an
            # accumulator once it is applied) writes each tower's replica.
            after = g.descendants(roots)
            roots += [
                n
                for n in g.names()
                if n in after and n not in roots and any(v in self.state for v in self._written(n))
            ]
        # Per-tower sources: the fed batch, and stateful ops that do not read a variable (each
        # tower's IteratorGetNext draws its own batch; stacks and TensorArrays are per step).
        upstream = g.ancestors(roots, stop=excluded)
        sources = list(self.batched) + [
            n
            for n in g.names()
            if n in upstream
            and not excluded(n)
            and opdefs.is_stateful(g.node(n).op)
            and not self._reads_variable(n)
        ]
        self.data_dep = g.descendants(sources)
        self.dep = self.data_dep | g.descendants(sorted(self.state))
        after_cut = g.descendants(self.raw_nodes)
        # Dead ends of the backward pass (gradients w.r.t. inputs, unused shapes) belong to the
        # tower too: left global they would read merged copies for nothing.
        backward = self.a.backward.nodes
        roots += [n for n in g.names() if n in backward and n in self.data_dep and n not in after_cut]
        region = g.ancestors(roots, stop=excluded) - shared
        before_cut = g.ancestors(self.raw_nodes, stop=excluded)
        self.update = {n for n in region if n in after_cut and n not in before_cut}
        self.tower = region - self.update
        self.order = [n for n in g.names() if n in region]  # graph order: copies keep it
        # Gradients that do not depend on the batch (or on replicas) are equal in every tower and
        # need no reduction; gathering them would even repeat sparse indices K times.
        self.raw = {
            t: gr
            for t, gr in self.raw.items()
            if names.node_of(t) in self.tower and names.node_of(t) in self.dep
        }
        # Writes to variables that are not trained (BatchNorm moving statistics under
        # control_dependencies(update_ops)) run once, in tower 0; so does what only they need.
        writes = {n for n in region if self._writes_shared(n)}
        if writes:
            rest = g.ancestors(roots, stop=(shared | writes).__contains__)
            self.tower0_only = {n for n in region if n in writes or n not in rest}

    def _written(self, n: str) -> list[str]:
        return gradients.written_variables(self.g, n, self.variables, self.a.library)

    def _reads_variable(self, n: str) -> bool:
        return any(not r.startswith("^") and names.node_of(r) in self.variables for r in self.g.node(n).input)

    def _writes_shared(self, n: str) -> str | None:
        if opdefs.apply_signature(self.g.node(n).op):
            return None
        return next((v for v in self._written(n) if v not in self.state), None)

    # -- devices ---------------------------------------------------------------------------
    def _place_variables(self) -> None:
        """Parameter server: every variable on the ps device. Replicated: canonical copies (and
        unplaced shared variables) on the first tower's device."""
        first = self.devices[0]
        for v in self.variables:
            node = self.g.node(v)
            if not self.replicated:
                target = self.ps_device or (self.ctx.ps_devices or [first])[0]
            elif v in self.state or not node.device:
                target = first
            else:
                self.ctx.variable_devices[v] = node.device
                continue
            dev = self._group_device(v, target)
            self.rw.set_device(v, dev)
            self.ctx.variable_devices[v] = dev

    def _group_device(self, var: str, device: str) -> str:
        """`device`, or its host if something that must sit with `var` has no kernel there."""
        key = (var, self._types.get(device) or devmod.device_type(device))
        ok = self._group_ok.get(key)
        if ok is None:
            ok = self._group_ok[key] = (
                placement.group_device(self.g, placement.members(self.g, var), device) == device
            )
        return device if ok else devmod.host_of(device)

    def _var_device(self, v: str, i: int) -> str:
        if v in self.state and i > 0:
            return self.ctx.variable_devices[self.ctx.replicas[v][i]]
        return self.ctx.variable_devices[v] or self.devices[0]

    # -- replicas of variables ---------------------------------------------------------------
    def _plan_replicas(self) -> None:
        """Name and place every replica now; the nodes are made with their tower (see run)."""
        self.replica_order = [v for v in self.g.names() if v in self.state]
        for v in self.replica_order:
            self.ctx.replicas[v] = [v] + [names.tower_name(i, v) for i in range(1, self.k)]
            for i in range(1, self.k):
                self.ctx.variable_devices[self.ctx.replicas[v][i]] = self._group_device(v, self.devices[i])

    def _plan_mirrors(self) -> None:
        """Writes to a replicated variable outside the training step (initializers, restores, user
        assigns) also write every replica, with the same value, before the original runs. The
        originals get their control inputs now; the mirror nodes come with their tower, and read
        what the original reads by then (a value computed in the towers: tower 0's copy)."""
        region = set(self.order)
        self.mirror_plans: list[tuple[NodeDef, str]] = []
        seen: set[str] = set()
        for v in self.replica_order:
            for user in self.g.users(v):
                if user in region or user not in self.original or user in seen:
                    continue
                node = self.g.node(user)
                positions = gradients.written_positions(node, self.a.library)
                if not any(names.node_of(node.input[p]) == v for p in positions if p < len(node.input)):
                    continue
                if user in self.data_dep:
                    raise InvalidGraphError(
                        f"node '{user}' ({node.op}) updates trainable variable '{v}' from tower data "
                        "outside an optimizer apply op; graphpass cannot keep replicas in sync"
                    )
                seen.add(user)
                self.mirror_plans.append((node, v))
        for node, _ in self.mirror_plans:
            self.rw.add_control_inputs(node.name, [names.tower_name(i, node.name) for i in range(1, self.k)])

    def _tower_extras(self, i: int) -> list:
        """Tower i's replicas and mirrored writes (i >= 1), as NodeDefs."""
        out = []
        for v in self.replica_order:
            src = self.g.node(v)
            node = self._copy(src, self.ctx.replicas[v][i], [], i)
            if opdefs.is_resource_variable_op(src.op) and "shared_name" in src.attr:
                node.attr["shared_name"].s = f"tower{i}/".encode() + (src.attr["shared_name"].s or v.encode())
            node.device = self.ctx.variable_devices[node.name]
            out.append(node)
        for src, v in self.mirror_plans:
            data = [self._replica_ref(r, i) for r in src.input if not r.startswith("^")]
            mirror = self._copy(src, names.tower_name(i, src.name), data, i)
            mirror.device = self._var_device(v, i)
            out.append(mirror)
        return out

    def _extras_devices(self, i: int) -> list[str]:
        return [self.ctx.variable_devices[self.ctx.replicas[v][i]] for v in self.replica_order] + [
            self._var_device(v, i) for _, v in self.mirror_plans
        ]

    def _copy(self, src, name: str, inputs: list[str], i: int):
        """A NodeDef like `src`, named `name`, reading `inputs`, colocated with tower i's copies."""
        self._check_free(name)
        node = self.g.new_node()
        node.CopyFrom(src)
        node.name = name
        del node.input[:]
        node.input.extend(inputs)
        node.device = ""
        if names.COLOCATION_ATTR in node.attr:
            names.set_colocation(
                node,
                [self.ctx.replicas[t][i] if t in self.state else t for t in names.colocation_targets(node)],
            )
        return node

    def _insert_placed(self, nodes: list, link: bool = True, inputs: list | None = None) -> None:
        """Add nodes made in bulk, already on their final devices (settle leaves them be)."""
        self.rw.add_many(nodes, inputs, link)
        self.cloned.update(n.name for n in nodes)

    def _replica_ref(self, ref: str, i: int) -> str:
        r = names.parse(ref)
        if r.node in self.state:
            return str(names.Ref(self.ctx.replicas[r.node][i], r.index, r.control))
        return ref

    # -- inputs ----------------------------------------------------------------------------
    def _split_inputs(self) -> None:
        host = devmod.host_of(self.devices[0])
        for name, inp in self.batched.items():
            if inp.static_batch is not None and inp.static_batch % self.k:
                raise ConfigError(
                    f"placeholder '{name}' has a fixed batch of {inp.static_batch}, which does not "
                    f"divide across {self.k} towers"
                )
            base = self.rw.unique_name(f"{name}/split")
            axis = self.rw.const(f"{base}/axis", 0, types_pb2.DT_INT32, host)
            controls = []
            if self.check_batch and inp.static_batch is None:
                controls = [self._batch_check(name, base, host)]
            self.rw.add(
                base,
                "Split",
                [axis.name, name] + [names.control(c) for c in controls],
                {"T": type_attr(inp.dtype), "num_split": int_attr(self.k)},
                host,
            )
            # Each tower reads its shard as `tower{i}/<placeholder>`, so that towers differ only
            # in their prefix (the byte copies rename nothing else).
            for i in range(self.k):
                self._check_free(names.tower_name(i, name))
                shard = self.rw.add(
                    names.tower_name(i, name),
                    "Identity",
                    [names.tensor(base, i)],
                    {"T": type_attr(inp.dtype)},
                )
                self.rw.record_tower(shard.name, i, name)
                self.rw.set_device(shard.name, devmod.for_node(shard, self.devices[i]))
            self.shards[name] = base

    def _batch_check(self, name: str, base: str, host: str) -> str:
        rw, i32 = self.rw, types_pb2.DT_INT32
        shape = rw.add(
            f"{base}/check/shape",
            "Shape",
            [name],
            {"T": type_attr(self.batched[name].dtype), "out_type": type_attr(i32)},
            host,
        )
        begin = rw.const(f"{base}/check/begin", [0], i32, host)
        end = rw.const(f"{base}/check/end", [1], i32, host)
        batch = rw.add(
            f"{base}/check/batch",
            "StridedSlice",
            [shape.name, begin.name, end.name, end.name],
            {
                "T": type_attr(i32),
                "Index": type_attr(i32),
                "shrink_axis_mask": int_attr(1),
                "begin_mask": int_attr(0),
                "end_mask": int_attr(0),
                "ellipsis_mask": int_attr(0),
                "new_axis_mask": int_attr(0),
            },
            host,
        )
        towers = rw.const(f"{base}/check/towers", self.k, i32, host)
        mod = rw.add(f"{base}/check/mod", "FloorMod", [batch.name, towers.name], {"T": type_attr(i32)}, host)
        zero = rw.const(f"{base}/check/zero", 0, i32, host)
        ok = rw.add(
            f"{base}/check/divisible",
            "Equal",
            [mod.name, zero.name],
            {"T": type_attr(i32), "incompatible_shape_error": bool_attr(True)},
            host,
        )
        msg = rw.const(
            f"{base}/check/message",
            f"graphpass: the batch fed to '{name}' is the global batch and must divide evenly across "
            f"{self.k} towers; its size is",
            types_pb2.DT_STRING,
            host,
        )
        assert_op = rw.add(
            f"{base}/check/assert",
            "Assert",
            [ok.name, msg.name, batch.name],
            {"T": type_list_attr([types_pb2.DT_STRING, i32]), "summarize": int_attr(3)},
            host,
        )
        return assert_op.name

    # -- cloning ---------------------------------------------------------------------------
    def _plan_towers(self) -> None:
        """Decide, once per region node, how every tower's copy reads its inputs and where it
        runs. The plans keep the original NodeDefs, so the originals may leave the graph."""
        region = set(self.order)
        memo: dict = {}
        self.plans = {n: (self.g.node(n), *self._plan(n, region, memo)) for n in self.order}

    def _check_output_size(self) -> None:
        """Refuse, before copying anything, a rewrite whose GraphDef would pass protobuf's limit."""
        tower = sum(plan[0].ByteSize() for plan in self.plans.values())
        estimate = len(self.ctx.shapes.source_bytes) + (self.k - 1) * tower
        if estimate > MAX_GRAPH_BYTES:
            biggest = sorted(self.plans, key=lambda n: -self.plans[n][0].ByteSize())[:3]
            raise InvalidGraphError(
                f"the rewritten graph would be about {estimate / 2**30:.1f} GiB, over protobuf's 2 GiB "
                f"limit for a GraphDef: each of the {self.k} towers copies {tower / 2**20:.0f} MiB "
                f"(largest nodes: {', '.join(biggest)}); keep big tensors in variables, or share "
                "constants with a lower replicate: share_constants_over"
            )

    def _clone_towers(self) -> None:
        """Copy the region once per tower. Through the plans: a template tower per digit count
        (tower 1, tower 10 from K = 11, ...) and the part of tower 0 that reads differently
        (canonical variables, tower-0-only work). Every other tower, and the rest of
        tower 0, when safe: as renamed bytes of the template."""
        region = set(self.order)
        members = [n for n in self.order if n not in self.tower0_only]
        if not COPY_TOWERS or self.k == 1:
            for i in range(self.k):
                self.ctx.progress.update("replicate: tower", i, self.k)
                extras = self._tower_extras(i) if i > 0 and self.replicated else []
                self._clone_with_plans(i, self.order if i == 0 else members, region, extras)
            return
        regular = self._regular_in_tower0(members)
        self._clone_with_plans(0, [n for n in self.order if n not in regular], region, [])
        templates: dict[int, _Template] = {}
        for i in (10**d for d in range(len(str(self.k - 1)))):  # 1, 10, 100, ... below K
            if i < self.k:
                extras = self._tower_extras(i) if self.replicated else []
                made = self._clone_with_plans(i, members, region, extras)
                names_ = [n.name for n in made]
                prefix = len(f"tower{i}/")
                renamed = [_renamed_attrs(n, f"tower{i}/") for n in made]
                templates[len(str(i))] = _Template(
                    i, names_, frozenset(n[prefix:] for n in names_), len(extras), renamed
                )
        for i in range(self.k):
            self.ctx.progress.update("replicate: tower", i, self.k)
            if i == 0:
                self._clone_from_template(0, members, templates[1], keep=[n in regular for n in members])
            elif templates[len(str(i))].index != i:
                self._clone_from_template(i, members, templates[len(str(i))])

    def _regular_in_tower0(self, members: list[str]) -> set[str]:
        """Members whose tower-0 copy is the template's renamed: every input a copy, a constant
        name or a sink; not colocated with a replicated variable (tower 0 has the canonical one)
        or a tower-0-only node (only tower 0's copy keeps that colocation); not the colocation
        target of a node that stays parsed (placement reads its device)."""
        sinks_ok = {
            t
            for t, outs in self.sinks.items()
            if len(outs) > 1 and outs[0][len("tower0/") :] == outs[1][len("tower1/") :]
        }
        regular = set()
        copies_only: dict[int, bool] = {}  # by control entries
        for n in members:
            src, entries, controls, _ = self.plans[n]
            if any(
                type(e) is not str and e[0] != self._COPY and not (e[0] == self._SINK and e[1] in sinks_ok)
                for e in entries
            ):
                continue
            if controls:
                ok = copies_only.get(id(controls))
                if ok is None:
                    ok = copies_only[id(controls)] = all(
                        type(e) is str or e[0] == self._COPY for e in controls
                    )
                if not ok:
                    continue
            if names.COLOCATION_ATTR in src.attr and any(
                t in self.state or t in self.tower0_only for t in names.colocation_targets(src)
            ):
                continue
            regular.add(n)
        # Colocation targets of parsed nodes, global or tower 0's own, stay parsed, transitively.
        pinned = [
            t[len("tower0/") :] for name in self.g for t in self.g.colocation(name) if t.startswith("tower0/")
        ]
        pinned += [n for n in self.order if n not in regular]
        while pinned:
            n = pinned.pop()
            regular.discard(n)
            src = self.plans[n][0] if n in self.plans else None
            if src is not None and names.COLOCATION_ATTR in src.attr:
                pinned += [t for t in names.colocation_targets(src) if t in regular]
        return regular

    # Input entries of a clone plan: a constant string, or a tuple rendered per tower.
    _COPY, _SINK, _STATE, _MEAN, _ALL = range(5)

    def _plan(self, n: str, region: set[str], memo: dict) -> tuple[list, tuple, tuple]:
        """How node `n` is copied into any tower: the entries of its data inputs and of its
        control inputs, and where it is placed. `memo`: entries by data input string, for the
        readers whose entries depend on nothing else, and control entries by control tuple
        (they depend on nothing else; nodes that share a tuple share its entries)."""
        data, ctrl = self.g.producers(n)
        refs = self.g.node(n).input[: len(data)] if data else []
        if n in self.update or n in self.tower0_only:
            entries = [self._input_entry(ref, n, region) for ref in refs]
        else:
            entries = []
            for ref in refs:
                entry = memo.get(ref)
                if entry is None:
                    entry = memo[ref] = self._input_entry(ref, n, region)
                entries.append(entry)
        controls = ()
        if ctrl:
            key = (id(ctrl), n in self.tower0_only)
            controls = memo.get(key)
            if controls is None:
                controls = memo[key] = tuple(self._input_entry("^" + p, n, region) for p in ctrl)
        return entries, controls, self._device_kind(n)

    def _input_entry(self, ref: str, consumer: str, region: set[str]):
        r = names.parse(ref)
        p = r.node
        pre = "^" if r.control else ""
        suffix = f":{r.index}" if r.index > 0 else ""
        if not r.control and consumer in self.update and p in self.tower:
            t = names.tensor(p, r.index)
            if t in self.raw:
                return (self._SINK, t)
            if p in self.data_dep:
                self.merge_needed.setdefault(p, set()).add(r.index)
                return ref  # batch-dependent tower tensor read by the update: the merged value
        if p in region:
            if p in self.tower0_only:
                return f"{pre}tower0/{p}{suffix}"
            if r.control and consumer in self.tower0_only:
                return (self._ALL, p)  # what runs once waits for every tower's copy
            if (
                consumer in self.tower0_only
                and self.shared_updates == "mean"
                and p in self.data_dep
                and not pre
            ):
                return (self._MEAN, p, r.index)
            return (self._COPY, pre, p + suffix)
        if p in self.shards:  # the tower's shard, named like a copy (see _split_inputs)
            return (self._COPY, pre, p + suffix)
        if p in self.state:
            return (self._STATE, pre, p, suffix)
        return ref

    def _every_copy(self, n: str) -> list[str]:
        return [names.control(names.tower_name(j, n)) for j in range(self.k)]

    def _render(self, entry, i: int) -> str:
        if type(entry) is str:
            return entry
        kind = entry[0]
        if kind == self._COPY:
            return f"{entry[1]}tower{i}/{entry[2]}"
        if kind == self._SINK:
            return self.sinks[entry[1]][i]
        if kind == self._STATE:
            return entry[1] + self.ctx.replicas[entry[2]][i] + entry[3]
        return self._tower_mean(entry[1], entry[2])

    def _device_kind(self, n: str) -> tuple:
        node = self.g.node(n)
        for p in self.g.data_inputs(n):
            if p in self.variables:
                return ("var", p)
        if node.device and devmod.device_type(node.device) == "CPU":
            return ("host",)
        return ("tower", node)

    def _device(self, kind: tuple, i: int) -> str:
        if kind[0] == "var":
            return self._var_device(kind[1], i)
        dev = self.devices[i]
        if kind[0] == "host":
            return self._hosts[dev]
        if kind[0] == "any":
            return dev
        key = (id(kind[1]), self._types[dev])
        ok = self._kernel_ok.get(key)
        if ok is None:
            ok = self._kernel_ok[key] = devmod.for_node(kind[1], dev) == dev
        return dev if ok else self._hosts[dev]

    def _clone_with_plans(self, i: int, members: list[str], region: set[str], extras: list) -> list:
        """Tower i's replicas and mirrors (`extras`, made already) and its copies of `members`."""
        prefix = f"tower{i}/"
        copy_kind = self._COPY
        out = list(extras)
        written: list = [None] * len(extras)
        rendered: dict[int, tuple[list[str], tuple[str, ...]]] = {}  # by control entries
        for n in members:
            src, entries, controls, kind = self.plans[n]
            name = prefix + n
            self._check_free(name)
            node = self.g.new_node()
            node.CopyFrom(src)
            node.name = name
            del node.input[:]
            refs = [
                e if type(e) is str else e[1] + prefix + e[2] if e[0] == copy_kind else self._render(e, i)
                for e in entries
            ]
            data = len(refs)
            ctrl: tuple[str, ...] = ()
            if controls:
                done = rendered.get(id(controls))
                if done is None:
                    ctrl_refs = [
                        r
                        for e in controls
                        for r in (
                            self._every_copy(e[1])
                            if type(e) is not str and e[0] == self._ALL
                            else [self._render(e, i)]
                        )
                    ]
                    done = rendered[id(controls)] = (ctrl_refs, self.g.control_producers(ctrl_refs))
                refs += done[0]
                ctrl = done[1]
            node.input.extend(refs)
            node.device = self._device(kind, i)
            attrs = node.attr
            if OUTPUT_SHAPES in attrs:
                del attrs[OUTPUT_SHAPES]
            for key in PER_TOWER_NAME_ATTRS:
                if key in attrs and attrs[key].s:
                    attrs[key].s = prefix.encode() + attrs[key].s
            targets = []
            if names.COLOCATION_ATTR in attrs:
                # A tower-0-only target has no copy in the other towers: only tower 0 keeps it.
                only0 = self.tower0_only
                # A node that sits with a shared variable (a read of Adam's beta power, which
                # TensorFlow colocates with a trained variable) stays with the canonical copies.
                shared = kind[0] == "var" and kind[1] not in self.state
                targets = [
                    prefix + t
                    if t in region
                    else self.ctx.replicas[t][i]
                    if t in self.state and not shared
                    else t
                    for t in names.colocation_targets(node)
                    if i == 0 or t not in only0
                ]
                names.set_colocation(node, targets)
            written.append((refs, data, tuple(targets), ctrl))
            out.append(node)
        self._insert_placed(out, link=False, inputs=written)
        for node in out[: len(extras)]:
            self.rw.record_tower(node.name, i, node.name[len(prefix) :])
        for n in members:
            self.rw.record_tower(prefix + n, i, n)
        return out

    def _clone_from_template(
        self, i: int, members: list[str], t: _Template, keep: list[bool] | None = None
    ) -> None:
        """Tower i as a copy of template tower t.index (its members where `keep`, not its
        replicas); the template has as many digits, so the renamed prefix keeps its length."""
        if keep is None:
            chosen = list(range(len(t.names)))
        else:
            chosen = [t.extras + j for j, k in enumerate(keep) if k]
        if t.snapshot is None:
            t.snapshot = self.rw.template(t.names, t.index, f"tower{t.index}/", t.renamed)
        self.rw.add_copy(t.snapshot, i, f"tower{i}/", chosen, self._copy_devices(i, t, members, chosen))

    def _copy_devices(self, i: int, t: _Template, members: list[str], chosen: list[int]) -> list[str]:
        """Where tower i's copies of template t's nodes `chosen` run: by the same rules as the
        template's, except that a template node a later pass moved (to its variable's parameter
        server, say: a place shared by the towers) takes its copies along."""
        if t.slots is None:
            extras = self._extras_devices(t.index) if self.replicated else []
            kinds = [None] * len(extras) + [self.plans[n][3] for n in members]
            planned = extras + [self._device(kind, t.index) for kind in kinds[len(extras) :]]
            now = t.snapshot.devices
            # A slot: the device itself (moved, or a replica/mirror: computed per tower), or
            # the placement kind, whose device per tower is looked up once per distinct kind.
            one_type = len(set(self._types.values())) == 1
            t.slots = [
                now[j] if now[j] != planned[j] else self._slot(kinds[j], one_type) for j in range(len(kinds))
            ]
        extras = self._extras_devices(i) if i > 0 and self.replicated else []
        table: dict = {}
        out = []
        for j in chosen:
            slot = t.slots[j]
            if slot is None:
                out.append(extras[j])
            elif type(slot) is str:
                out.append(slot)
            else:
                key = slot if slot[0] != "tower" else id(slot[1])  # a NodeDef does not hash
                dev = table.get(key)
                if dev is None:
                    dev = table[key] = self._device(slot, i)
                out.append(dev)
        return out

    def _slot(self, kind: tuple | None, one_type: bool) -> tuple | None:
        """`kind` as a key that says where a node goes in any tower: a compute node whose op has
        a kernel on the towers' (single) device type is ("any",), one that has not ("host",)."""
        if kind is None or kind[0] != "tower" or not one_type:
            return kind
        return ("any",) if self._device(kind, 0) == self.devices[0] else ("host",)

    def _tower_mean(self, p: str, k: int) -> str:
        """The element-wise mean of the towers' copies of output `k` of `p` (built once)."""
        t = names.tensor(p, k)
        if t not in self.tower_means:
            dtype = opdefs.output_types(self.plans[p][0])[k]  # the original may have left the graph
            name = self.rw.unique_name(f"{p}/tower_mean_{k}")
            self.tower_means[t] = self._mean_of(
                name, [names.tensor(names.tower_name(i, p), k) for i in range(self.k)], dtype, "Mean"
            )
        return self.tower_means[t]

    def _check_free(self, name: str) -> None:
        if name in self.g:
            raise InvalidGraphError(
                f"the graph already has a node named '{name}', the name of a tower copy; "
                "is it already replicated?"
            )

    # -- reductions ------------------------------------------------------------------------
    def _sink_key(self, grad) -> str:
        return grad.variable if grad.kind == "dense" else f"{grad.variable}/{grad.kind}"

    def _make_sinks(self) -> None:
        for t, grad in self.raw.items():
            producer, index = names.node_of(t), names.parse(t).index
            dtype = opdefs.output_dtype(self.g.node(producer), index)
            key = self._sink_key(grad)
            if self.replicated:
                outs = []
                base = self.rw.unique_base(f"reduced_grads/{key}", [f"tower{i}/" for i in range(self.k)])
                for i in range(self.k):
                    name = names.tower_name(i, base)
                    copy = names.tensor(names.tower_name(i, producer), index)
                    self.rw.add(name, "Identity", [copy], {"T": type_attr(dtype)}, self.devices[i])
                    self.rw.record_tower(name, i, base)
                    outs.append(name)
            else:
                name = self.rw.unique_name(f"reduced_grads/{key}")
                first = names.tensor(names.tower_name(0, producer), index)
                var = grad.variable
                self.rw.add(
                    name, "Identity", [first], {"T": type_attr(dtype)}, self._var_device(var, 0), [var]
                )
                outs = [name]
            self.sinks[t] = outs

    def _register_reductions(self) -> None:
        keys: set[str] = set()
        for t, grad in self.raw.items():
            producer, index = names.node_of(t), names.parse(t).index
            var = self.variables[grad.variable]
            shape = var.shape if grad.kind == "dense" and var.num_elements is not None else None
            if shape is not None and (self._scope_is_guess(t) or not self._applied(grad)):
                self._check_gradient_shape(t, grad.variable, shape)
            elif grad.kind != "dense":  # its shape is asked for anyway
                self._check_sparse_part(t, grad.variable)
            key = base = self._sink_key(grad)
            n = 0
            while key in keys:  # one variable, several gradients (two losses, two optimizers)
                n += 1
                key = f"{base}_{n}"
            keys.add(key)
            self.ctx.pending.append(
                Reduction(
                    key=key,
                    inputs=[names.tensor(names.tower_name(i, producer), index) for i in range(self.k)],
                    outputs=self.sinks[t],
                    dtype=opdefs.output_dtype(self.g.node(producer), index),
                    shape=shape if shape is not None else self.ctx.shapes.shape(t),
                    variables=[grad.variable],
                    kind=grad.kind,
                )
            )

    def _scope_is_guess(self, t: str) -> bool:
        """Whether gradient `t` was told apart by a weak sign: a scope merely named
        `gradient_tape`, or no gradient scope at all (scopes read from the forward ops their
        `<op>_grad` groups differentiate are exact)."""
        return not self.a.backward.exact(names.node_of(t))

    def _applied(self, grad) -> bool:
        """Whether only optimizer apply ops update with `grad` (plain writes, like assigns, are
        updates by a weaker sign: their value comes from the backward pass)."""
        return all(opdefs.apply_signature(self.g.node(u).op) for u in grad.updates)

    def _check_gradient_shape(self, t: str, var: str, shape: list[int]) -> None:
        """A dense gradient has its variable's shape; if TensorFlow infers another, the gradient
        was misread (a user scope taken for a gradient scope, say) and must not be reduced."""
        static = self.ctx.shapes.shape(t)
        if static is not None and None not in static and static != shape:
            raise InvalidGraphError(
                f"tensor '{t}', taken for the gradient of '{var}', has shape {static} but the "
                f"variable has {shape}: graphpass cannot tell this graph's gradients apart"
            )

    def _check_sparse_part(self, t: str, var: str) -> None:
        """The indices and values of a sparse gradient have a first axis to gather along; a scalar
        taken for one means the gradient was misread."""
        static = self.ctx.shapes.shape(t)
        if static is not None and len(static) == 0:
            raise InvalidGraphError(
                f"tensor '{t}', taken for part of a sparse gradient of '{var}', is a scalar: "
                "graphpass cannot tell this graph's gradients apart"
            )

    # -- the global side -------------------------------------------------------------------
    def _rewire_global_users(self) -> None:
        """Global readers of region nodes: gradients -> reduced value, control -> every copy,
        data -> merged value (built later under the original name). Each reader is rewritten
        once, however many region nodes it reads (a train op waits for thousands of updates)."""
        region = set(self.order)
        raw_sink = {names.node_of(t): sinks[0] for t, sinks in self.sinks.items()}
        readers: dict[str, None] = {}
        outside = self._read_from_outside(region, originals_only=True)
        for n in self.order:
            if n not in outside:
                continue
            for user in self.g.users(n):
                if user not in region and user in self.original:
                    readers[user] = None
            for user in self.g.colocation_users(n):
                if user not in region and user in self.original:
                    targets = self.g.colocation(user)
                    copies = self._copies(n)
                    new = [raw_sink.get(t, copies[0]) if t == n else t for t in targets]
                    self.rw.set_colocation(user, new)
        for user in readers:
            new_inputs: list[str] = []
            # A global node that reads one tower's copy of an update (a cond around apply ops
            # yields a value) must still run every tower's: they update every replica.
            run_all: list[str] = []
            for ref in self.g.node(user).input:
                r = names.parse(ref)
                if r.node not in region:
                    new_inputs.append(ref)
                elif r.control:
                    # Waiting for a stateful node (a read of step state) means waiting for every
                    # tower's copy: each runs on its own schedule.
                    per_tower = (
                        r.node in self.dep
                        or r.node in self.update
                        or opdefs.is_stateful(self.g.node(r.node).op)
                    )
                    new_inputs.extend(
                        names.control(c) for c in (self._copies(r.node) if per_tower else [r.node])
                    )
                else:
                    new_inputs.append(self._global_input(r.node, r.index, user, self._copies(r.node)))
                    if r.node in self.update and opdefs.is_stateful(self.g.node(r.node).op):
                        run_all += [names.control(self._ran(r.node, r.index, i)) for i in range(1, self.k)]
            self.rw.set_inputs(user, new_inputs + [c for c in dict.fromkeys(run_all) if c not in new_inputs])

    def _ran(self, n: str, k: int, i: int) -> str:
        """An Identity on tower i's device reading output `k` of its copy of `n` (made once): a
        control input on it runs that copy whole. One on the copy itself may not: a lowered
        functional If signals control outputs once its branch is chosen, and runs the branch's
        ops only for its data outputs' readers."""
        key = (n, k, i)
        if key not in self.ran:
            dtype = opdefs.output_types(self.g.node(n))[k]
            name = self.rw.unique_name(names.tower_name(i, f"{n}/ran_{k}"))
            self.rw.add(name, "Identity", [names.tensor(names.tower_name(i, n), k)], {"T": type_attr(dtype)})
            self.rw.set_device(name, self.devices[i])
            self.ran[key] = name
        return self.ran[key]

    def _copies(self, n: str) -> list[str]:
        towers = range(1) if n in self.tower0_only else range(self.k)
        return [names.tower_name(i, n) for i in towers]

    def _global_input(self, n: str, k: int, user: str, copies: list[str]) -> str:
        """What global node `user` reads instead of output `k` of region node `n`."""
        t = names.tensor(n, k)
        if t in self.sinks:
            return self.sinks[t][0]
        unode = self.g.node(user)
        writes = any(p < len(unode.input) for p in gradients.written_positions(unode, self.a.library))
        if n in self.data_dep and not writes and n not in self.update and n not in self.tower0_only:
            self.merge_needed.setdefault(n, set()).add(k)
            return t
        if n in self.dep or n in self.update:
            # identical in every tower (or a write that takes tower 0's value): tower 0's copy
            return names.tensor(copies[0], k)
        return t

    def _merge_outputs(self) -> None:
        """Replace each tower node still read globally by a node of the same name that merges
        the towers' copies: mean (float scalars), sum (integer scalars), batch concatenation."""
        if self.merge_needed:  # their shapes decide how
            self.ctx.shapes.prepare(sorted(self.merge_needed))
        for n in self.order:
            if n not in self.merge_needed:
                continue
            src = self.g.node(n)
            used = max(self.merge_needed[n])
            types = opdefs.output_types(src)[: used + 1]
            device = self.devices[0]
            self.rw.take(n)
            if used == 0:
                self._merge_one(n, n, 0, types[0], device)
            else:
                parts = [self._merge_one(f"{n}/merged_{k}", n, k, types[k], device) for k in range(used + 1)]
                self.rw.add(n, "IdentityN", parts, {"T": type_list_attr(types)}, device)

    def _merge_one(self, name: str, src: str, k: int, dtype: int, device: str) -> str:
        t = names.tensor(src, k)
        copies = [names.tensor(names.tower_name(i, src), k) for i in range(self.k)]
        kind = self._merge_kind(t, dtype)
        rw = self.rw
        if kind == "tower0" or self.k == 1:
            rw.add(name, "Identity", [copies[0]], {"T": type_attr(dtype)}, device)
        elif kind == "concat":
            axis = rw.const(rw.unique_name(f"{name}/axis"), 0, types_pb2.DT_INT32, device)
            rw.add(
                name,
                "ConcatV2",
                copies + [axis.name],
                {"T": type_attr(dtype), "N": int_attr(self.k), "Tidx": type_attr(types_pb2.DT_INT32)},
                device,
            )
        else:
            self._mean_of(name, copies, dtype, "Mean" if kind == "mean" else "Sum")
        return name

    def _mean_of(self, name: str, tensors: list[str], dtype: int, op: str) -> str:
        """`op` (Mean or Sum) over the towers' tensors, stacked on a new first axis."""
        rw, device = self.rw, self.devices[0]
        stacked = rw.add(
            rw.unique_name(f"{name}/towers"),
            "Pack",
            tensors,
            {"T": type_attr(dtype), "N": int_attr(len(tensors)), "axis": int_attr(0)},
            device,
        )
        axis = rw.const(rw.unique_name(f"{name}/axis"), 0, types_pb2.DT_INT32, device)
        rw.add(
            name,
            op,
            [stacked.name, axis.name],
            {"T": type_attr(dtype), "Tidx": type_attr(types_pb2.DT_INT32), "keep_dims": bool_attr(False)},
            device,
        )
        return name

    def _merge_kind(self, t: str, dtype: int) -> str:
        shape = self.ctx.shapes.shape(t)
        if shape is not None and len(shape) == 0:
            if dtype in FLOAT_TYPES:
                return "mean"
            return "sum" if dtype in INT_TYPES else "tower0"
        if shape is None or shape[0] is None:
            return "concat"
        static = {i.static_batch for i in self.batched.values()}
        if shape[0] in static:
            return "concat"
        return "mean" if self.shared_updates == "mean" and dtype in FLOAT_TYPES else "tower0"

    def _read_from_outside(self, region: set[str], originals_only: bool) -> set[str]:
        """Region nodes that a node outside the region reads or is colocated with (if
        `originals_only`, a node of the input graph): one pass over the outside nodes' inputs."""
        found: set[str] = set()
        walked: set[int] = set()
        for u in self.g:
            if u in region or (originals_only and u not in self.original):
                continue
            data, ctrl = self.g.producers(u)
            found.update(region.intersection(data))
            if ctrl and id(ctrl) not in walked:
                walked.add(id(ctrl))
                found.update(region.intersection(ctrl))
            found.update(region.intersection(self.g.colocation(u)))
        return found

    def _drop_originals(self) -> None:
        """Erase the single-tower originals that nothing outside the towers still needs (loops
        make region nodes read each other, so this is a reachability question, not a count)."""
        region = set(self.order)
        keep: set[str] = set()
        outside = self._read_from_outside(region, originals_only=False)
        stack = [n for n in self.order if n in self.g and (n in self.merge_needed or n in outside)]
        while stack:
            n = stack.pop()
            if n in keep:
                continue
            keep.add(n)
            stack.extend(p for p in self.g.input_nodes(n) if p in region and p in self.g)
        self.rw.drop([n for n in self.order if n not in keep and n in self.g])
        for n in keep:  # a kept node colocated with a dropped one goes with tower 0's copy of it
            if self.g.get(n) is not None and self.g.colocation(n):
                targets = list(self.g.colocation(n))
                moved = [names.tower_name(0, t) if t in region and t not in keep else t for t in targets]
                if moved != targets:
                    self.rw.set_colocation(n, moved)
        for n in self.order:
            if n in keep and n not in self.merge_needed and (n in self.dep or n in self.update):
                raise InvalidGraphError(f"node '{n}' is still read outside the towers after replication")

    # -- driver ----------------------------------------------------------------------------
    def run(self) -> None:
        if any(u.targets for u in self.a.updates):
            self.rw.drop_function_colocation()
        order = step_state.plan(self.g, self.variables, self.a.library, self.a.step)
        step_state.apply(self.rw, order)
        self.ordered = order
        self.ctx.notes.extend(order.notes)
        self._regions()
        self._place_variables()
        if self.replicated:
            self._plan_replicas()
        self._split_inputs()
        self._make_sinks()
        self._plan_towers()
        self._check_output_size()
        self._register_reductions()
        if self.replicated:
            self._plan_mirrors()
        self._rewire_global_users()
        self._merge_outputs()
        self._drop_originals()
        # The copies go in last, in bulk: everything above asks who reads the originals, and the
        # use index needs no rebuild for that.
        self._clone_towers()
        placement.settle(self.g, self.rw, self.devices[0], skip=self.cloned, copies=False)


def _renamed_attrs(node, prefix: str) -> tuple[str, ...]:
    """The attrs of a tower copy that the rewrite began with its tower's prefix: loop frame,
    stack and TensorArray names, and a replica's shared name."""
    keys = [k for k in (*PER_TOWER_NAME_ATTRS, "shared_name") if k in node.attr and node.attr[k].s]
    return tuple(k for k in keys if node.attr[k].s.startswith(prefix.encode()))
