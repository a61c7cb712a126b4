"""The replicate pass's stages, one at a time, on fixture graphs (no TensorFlow session runs)."""

from __future__ import annotations

import pytest
from tensorflow.core.framework import graph_pb2

from graphpass import analysis, batch_dims, batch_inputs
from graphpass import devices as devmod
from graphpass.context import RewriteContext
from graphpass.errors import ConfigError, InvalidGraphError
from graphpass.ir.graph import Graph
from graphpass.ir.rewriter import Rewriter
from graphpass.naming import parse_tower, tower_name
from graphpass.passes.replicate import Replicate, inputs, merges, plans, reductions, regions, variables
from graphpass.passes.replicate.devices import Devices, place_variables
from graphpass.shapes import ShapeOracle

MLP_VARIABLES = ["hidden/bias", "hidden/kernel", "logits/bias", "logits/kernel"]


def _context(graph_def, k: int = 2, device_type: str = "GPU") -> RewriteContext:
    g = Graph(graph_def, copy=True)
    shapes = ShapeOracle(g.source_bytes(), g.names(), g.versions, g.library)
    info = analysis.analyze(g, describe=False)
    ctx = RewriteContext(g, Rewriter(g), devmod.parse_devices(k, device_type), info, shapes)
    ctx.batch = batch_inputs.decide(g, info, shapes)  # the replicate pass's first stage
    return ctx


def _placed(ctx: RewriteContext, replicated: bool, ps_device: str | None = None):
    """The stages up to the variables' placement: regions, devices, replicas."""
    found = regions.find_regions(ctx, replicated, 1 << 20)
    devs = Devices.of(ctx, found)
    place_variables(ctx, devs, replicated, ps_device)
    replicas = variables.plan_replicas(ctx, found, devs) if replicated else ()
    return found, devs, replicas


@pytest.fixture
def mlp(load_fixture):
    return load_fixture("mlp_sgd").graph_def


def test_regions_of_mlp_sgd_replicated(mlp):
    ctx = _context(mlp)
    found = regions.find_regions(ctx, True, 1 << 20)
    assert sorted(found.state) == MLP_VARIABLES
    assert sorted(found.batched) == ["x", "y"]
    assert sorted(found.update) == [f"train/update_{v}/ApplyGradientDescent" for v in MLP_VARIABLES]
    assert {"hidden/MatMul", "logits/MatMul", "hidden/kernel/read"} <= found.tower
    assert sorted(g.variable for g in found.raw.values()) == MLP_VARIABLES
    assert all(t.split(":")[0] in found.tower for t in found.raw)
    # variables, feeds and what runs outside the step stay global
    assert not found.region & {"x", "y", "init", "train", "hidden/kernel", "hidden/kernel/Assign"}
    assert found.region == found.tower | found.update and not found.tower & found.update
    assert list(found.order) == [n for n in ctx.graph.names() if n in found.region]
    assert not found.tower0_only


def test_regions_of_mlp_sgd_parameter_server(mlp):
    ctx = _context(mlp)
    found = regions.find_regions(ctx, False, 1 << 20)
    assert not found.state and not found.update
    assert "train/update_hidden/kernel/ApplyGradientDescent" not in found.region
    assert "hidden/MatMul" in found.tower
    assert sorted(g.variable for g in found.raw.values()) == MLP_VARIABLES


@pytest.mark.parametrize("replicated", [True, False])
def test_batchnorm_statistics_run_in_tower0_only(load_fixture, replicated):
    ctx = _context(load_fixture("batchnorm").graph_def)
    found = regions.find_regions(ctx, replicated, 1 << 20)
    assert "bn_fc/AssignMovingAvg/AssignSubVariableOp" in found.tower0_only
    assert found.tower0_only <= found.region
    assert not {v for v in found.state if "moving_" in v}  # statistics are not replicated


def test_big_constants_are_shared_not_copied(mlp):
    ctx = _context(mlp)
    every = regions.find_regions(ctx, True, 1 << 20)
    consts = {n for n in every.region if ctx.graph.node(n).op == "Const"}
    assert consts
    none = regions.find_regions(ctx, True, 0)  # any constant with a value is "big"
    assert not {n for n in none.region if ctx.graph.node(n).op == "Const"} & consts


@pytest.mark.parametrize("replicated", [True, False])
def test_variables_placement_and_replicas(mlp, replicated):
    ctx = _context(mlp, k=3)
    _, _, replicas = _placed(ctx, replicated)
    if replicated:
        assert sorted(replicas) == MLP_VARIABLES
        assert ctx.replicas["hidden/kernel"] == ["hidden/kernel"] + [
            tower_name(i, "hidden/kernel") for i in (1, 2)
        ]
        assert ctx.variable_devices[tower_name(2, "hidden/kernel")] == "/device:GPU:2"
    else:
        assert replicas == () and not ctx.replicas
    assert {ctx.variable_devices[v] for v in MLP_VARIABLES} == {"/device:GPU:0"}


def test_parameter_server_variables_go_to_the_ps_device(mlp):
    ctx = _context(mlp)
    _placed(ctx, False, "/job:ps/task:0/device:CPU:0")
    assert {ctx.variable_devices[v] for v in MLP_VARIABLES} == {"/job:ps/task:0/device:CPU:0"}
    assert ctx.graph.node("hidden/kernel").device == "/job:ps/task:0/device:CPU:0"


@pytest.mark.parametrize("check_batch", [True, False])
def test_inputs_split_into_one_shard_per_tower(mlp, check_batch):
    ctx = _context(mlp, k=3)
    found, _, _ = _placed(ctx, True)
    split = inputs.split_inputs(ctx, found, check_batch)
    g = ctx.graph
    assert split == {"x", "y"}
    for name in split:
        assert g.node(f"{name}/split").op == "Split"
        for i in range(3):
            shard = g.node(tower_name(i, name))
            assert (shard.op, list(shard.input)) == (
                "Identity",
                [f"{name}/split" if i == 0 else f"{name}/split:{i}"],
            )
            assert shard.device == f"/device:GPU:{i}"
        assert (f"{name}/split/check/assert" in g) == check_batch


def test_a_fixed_batch_that_does_not_divide_is_refused(mlp):
    gd = graph_pb2.GraphDef()
    gd.CopyFrom(mlp)
    x = next(n for n in gd.node if n.name == "x")
    x.attr["shape"].shape.dim[0].size = 3
    ctx = _context(gd, k=2)
    found, _, _ = _placed(ctx, True)
    copied = [n for n in found.order if n in found.tower]
    with pytest.raises(ConfigError, match="placeholder 'x' has a fixed batch of 3"):
        batch_dims.check_fixed_batch(ctx.graph, ctx.shapes, found.batched, copied, 2)


@pytest.mark.parametrize("replicated", [True, False])
def test_sinks_and_reductions(mlp, replicated):
    ctx = _context(mlp)
    found, devs, _ = _placed(ctx, replicated)
    sinks = reductions.make_sinks(ctx, found, devs, replicated)
    reductions.register_reductions(ctx, found, sinks)
    by_key = {r.key: r for r in ctx.pending}
    assert sorted(by_key) == MLP_VARIABLES
    red = by_key["hidden/kernel"]
    parsed = [parse_tower(t) for t in red.inputs]
    assert [p[0] for p in parsed] == [0, 1] and parsed[0][1] == parsed[1][1]
    assert parsed[0][1] in found.raw or parsed[0][1] + ":0" in found.raw
    if replicated:
        assert red.outputs == ["tower0/reduced_grads/hidden/kernel", "tower1/reduced_grads/hidden/kernel"]
        assert red.all_reduce
    else:
        assert red.outputs == ["reduced_grads/hidden/kernel"] and not red.all_reduce
    assert red.shape == ctx.analysis.variables["hidden/kernel"].shape


def test_plans_read_copies_replicas_and_sinks(mlp):
    ctx = _context(mlp)
    found, devs, _ = _placed(ctx, True)
    split = inputs.split_inputs(ctx, found, True)
    sinks = reductions.make_sinks(ctx, found, devs, True)
    planned = plans.plan_towers(ctx, found, split, "tower0")
    assert set(planned.by_node) == found.region
    matmul = planned.by_node["hidden/MatMul"]
    assert matmul.entries == [(plans.COPY, "", "x"), (plans.COPY, "", "hidden/kernel/read")]
    assert matmul.kind[0] == "tower"
    assert planned.by_node["hidden/kernel/read"].entries == [(plans.STATE, "", "hidden/kernel", "")]
    assert planned.by_node["hidden/kernel/read"].kind == ("var", "hidden/kernel")
    update = planned.by_node["train/update_hidden/kernel/ApplyGradientDescent"]
    assert [e for e in update.entries if type(e) is tuple and e[0] == plans.SINK] == [
        (plans.SINK, t) for t, g in found.raw.items() if g.variable == "hidden/kernel"
    ]
    assert set(sinks) == set(found.raw)
    assert planned.merges == {}


def test_plans_in_parameter_server_mode_read_the_one_variable(mlp):
    ctx = _context(mlp)
    found, _, _ = _placed(ctx, False)
    planned = plans.plan_towers(ctx, found, inputs.split_inputs(ctx, found, True), "tower0")
    assert planned.by_node["hidden/kernel/read"].entries == ["hidden/kernel"]


def test_output_size_is_checked_against_the_limit_before_copying(mlp):
    ctx = _context(mlp, k=4)
    found, _, _ = _placed(ctx, True)
    planned = plans.plan_towers(ctx, found, inputs.split_inputs(ctx, found, True), "tower0")
    plans.check_output_size(ctx, planned, 1 << 30)
    with pytest.raises(InvalidGraphError, match="each of the 4 towers copies"):
        plans.check_output_size(ctx, planned, 1000)


def test_combine_merges_is_the_union():
    a = {"n": frozenset({0}), "m": frozenset({1})}
    b = {"n": frozenset({2})}
    assert merges.combine(a, b) == {"n": frozenset({0, 2}), "m": frozenset({1})}
    assert merges.combine() == {}


def test_the_pass_declares_what_it_provides_and_keeps_its_options():
    assert Replicate.provides == ("towers",) and Replicate.requires == ()
    assert [o.name for o in Replicate.options()] == [
        "mode",
        "ps_device",
        "check_batch",
        "shared_updates",
        "share_constants_over",
        "split",
        "broadcast",
        "fixed_batch",
    ]


@pytest.mark.parametrize("mode", ["replicated", "parameter_server"])
def test_the_pass_makes_towers_that_differ_only_in_their_prefix(mlp, mode):
    ctx = _context(mlp, k=3)
    result = Replicate(mode=mode).run(ctx)
    assert result.details["towers"] == 3 and ctx.mode == mode
    towers: dict[int, set[str]] = {}
    for n in ctx.graph.names():
        parsed = parse_tower(n)
        if parsed:
            towers.setdefault(parsed[0], set()).add(parsed[1])
    assert sorted(towers) == [0, 1, 2]
    assert towers[1] == towers[2]
    # beyond tower 0's, the other towers hold replicas and mirrored writes: tower 0 has the originals
    extras = towers[1] - towers[0]
    assert all(n in ctx.graph for n in extras)
    assert (set(MLP_VARIABLES) <= extras) == (mode == "replicated")
    assert "hidden/MatMul" not in ctx.graph  # the single-tower original is gone
    with pytest.raises(ConfigError, match="already replicated"):
        Replicate().run(ctx)
