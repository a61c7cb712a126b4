"""replicate: copy the tower K times, split the inputs' batch, and leave one reduction per gradient.

Regions of the single-tower graph (README: "What the rewritten graph is"; regions.py):
- tower: what computes the raw gradients from the batch (or, in replicated mode, from a replicated
  variable), with the stateless helpers it reads (constants, shapes) and its dead backward ends.
  Copied per tower as `tower{i}/<name>` on device i; writes to untrained variables on that path
  (BatchNorm statistics) run in tower 0 only.
- update (replicated mode only): post-processing and the optimizer's updates, copied per tower so
  each tower updates its own replica with the reduced gradient.
- global: everything else (init, saver, step counter, summaries, losses off the gradient path).
  It keeps its names; where it read a tower tensor it reads the towers' copies merged (mean of
  scalars, concatenation of batches) under the original name.

Order of work (Replicate.run, the one place it is written): decide regions, devices, replica and
copy names, sinks and merges while the originals are intact (everything that asks who reads
whom); then build every tower at the end, in bulk (build.py): one template tower per digit count
(tower 1, 10, ...) and the nodes of tower 0 that read differently from the others through per-node
plans (plans.py); every other tower, and the rest of tower 0, as blocks of the template's bytes
renamed at output time (templates.py, graphpass/ir/towers.py). Tower i reads its shard of an input
as `tower{i}/<input>`, so towers differ only in their prefix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from ... import batch_dims, batch_inputs, placement, step_state
from ... import devices as devmod
from ...context import RewriteContext
from ...errors import ConfigError, InvalidGraphError, plural
from ...io import MAX_GRAPH_BYTES
from ..base import Pass, PassResult, option
from . import build, inputs, merges, originals, plans, reductions, regions, variables
from .build import OUTPUT_SHAPES
from .devices import Devices, place_variables
from .merges import FLOAT_TYPES, INT_TYPES
from .pins import normalize_pins
from .templates import PER_TOWER_NAME_ATTRS

__all__ = [
    "COPY_TOWERS",
    "FLOAT_TYPES",
    "INT_TYPES",
    "MAX_GRAPH_BYTES",
    "OUTPUT_SHAPES",
    "PER_TOWER_NAME_ATTRS",
    "Replicate",
]

# Towers after the first of each digit count are copies of a template tower, kept as its bytes
# (ir/towers.py). Tests turn it off to build every tower from the plans, and compare.
COPY_TOWERS = True
# MAX_GRAPH_BYTES (from io): the output size refused before copying; run() reads both at run time,
# so tests may lower it here.


@dataclass(frozen=True)
class Replicate(Pass):
    name = "replicate"
    summary = "copy the tower onto every device and split the input batch across them"
    provides: ClassVar[tuple[str, ...]] = ("towers",)
    requires: ClassVar[tuple[str, ...]] = ()

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
    split: list[str] | None = option(
        None,
        "inputs whose first dimension is the batch, split across the towers (default: decided from "
        "the graph's shapes; a sparse input is named by any of its parts)",
    )
    broadcast: list[str] | None = option(
        None, "inputs given whole to every tower (default: decided from the graph's shapes)"
    )
    fixed_batch: Literal["split", "per_tower"] = option(
        "split",
        "batch inputs declared with a fixed size B: split (each tower takes B/K; refused where the "
        "graph carries B elsewhere) or per_tower (each tower takes B, the inputs take K x B)",
    )

    def run(self, ctx: RewriteContext) -> PassResult:
        if ctx.mode is not None:
            raise ConfigError("the graph is already replicated: 'replicate' may appear once in a pipeline")
        ps = devmod.canonical(self.ps_device) if self.ps_device else None
        if ps and self.mode != "parameter_server":
            raise ConfigError("replicate: ps_device applies to mode: parameter_server only")
        if self.share_constants_over < 0:
            raise ConfigError("replicate: share_constants_over must be 0 or more")
        g, rw, a = ctx.graph, ctx.rewriter, ctx.analysis
        replicated = self.mode == "replicated"
        try:
            ctx.batch = batch_inputs.decide(
                g,
                a,
                ctx.shapes,
                [*ctx.split_inputs, *(self.split or ())],
                [*ctx.broadcast_inputs, *(self.broadcast or ())],
            )
        except (ConfigError, InvalidGraphError):
            # A graph already replicated holds its inputs' shards under the names a split gives
            # them (its towers meet no more): say that, not which input to split.
            inputs.check_shard_names(ctx, [i.name for i in a.inputs if i.shape != []])
            raise
        inputs.check_shard_names(ctx, ctx.batch.split)  # before any costly stage
        pinned = normalize_pins(ctx).note()
        if pinned:
            ctx.notes.append(pinned)
        original = frozenset(g.names())
        if any(u.targets for u in a.updates):
            rw.drop_function_colocation()
        ordered = step_state.plan(g, a.variables, a.library, a.step)
        step_state.apply(rw, ordered)
        ctx.notes.extend(ordered.notes)
        # Decide everything while the originals are intact: it all asks who reads whom.
        found = regions.find_regions(ctx, replicated, self.share_constants_over)
        ctx.batch = dataclasses.replace(ctx.batch, drawn={n: g.node(n).op for n in found.drawn})
        devs = Devices.of(ctx, found)
        place_variables(ctx, devs, replicated, ps)
        replicas = variables.plan_replicas(ctx, found, devs) if replicated else ()
        dense = {n: i for n, i in found.batched.items() if ctx.batch.role(n).sparse is None}
        if self.fixed_batch == "per_tower":
            inputs.fixed_per_tower(ctx, found, dense)
        else:
            copied = [n for n in found.order if n in found.tower]
            batch_dims.check_fixed_batch(g, ctx.shapes, dense, copied, ctx.num_towers)
        split_names = inputs.split_inputs(ctx, found, self.check_batch)
        sinks = reductions.make_sinks(ctx, found, devs, replicated)
        planned = plans.plan_towers(ctx, found, split_names, self.shared_updates)
        plans.check_output_size(ctx, planned, MAX_GRAPH_BYTES)
        reductions.register_reductions(ctx, found, sinks)
        mirrors = variables.plan_mirrors(ctx, found, replicas, original) if replicated else ()
        rewired = merges.rewire_global_users(ctx, found, sinks, devs, original)
        needed = merges.combine(planned.merges, rewired)
        merges.merge_outputs(ctx, found, needed, self.shared_updates)
        originals.drop_originals(ctx, found, needed)
        # The copies go in last, in bulk: the use index needs no rebuild for what asked above.
        made = build.Build(ctx, found, devs, planned, sinks, replicas, mirrors, replicated)
        cloned = build.clone_towers(made, COPY_TOWERS)
        placement.settle(g, rw, ctx.devices[0], skip=cloned, copies=False)
        ctx.mode = self.mode
        k = ctx.num_towers
        described = step_state.describe(ordered)
        return PassResult(
            True,
            f"{k} towers ({self.mode}), {plural(len(a.trainable), 'trainable variable')}, "
            f"{plural(len(ctx.pending), 'gradient')} to reduce" + (f"; {described}" if described else ""),
            {"towers": k, "mode": self.mode, "ordered_state": list(ordered.state)},
        )
