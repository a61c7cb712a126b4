"""The rewritten graph really is K towers, keeps the drop-in names, and is deterministic."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import pytest
from tensorflow.core.framework import graph_pb2, types_pb2

import graphpass
from graphpass.io import serialize
from graphpass.ir import names

from .conftest import ROOT, TRAINING_MODELS

HEAVY = ("MatMul", "Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput")


def _ops(graph_def):
    return Counter(n.op for n in graph_def.node)


@pytest.mark.parametrize("rules", ["replicated-collective", "ps-naive"])
@pytest.mark.parametrize("model", ["mlp_sgd", "conv_momentum"])
def test_heavy_ops_appear_k_times_on_k_devices(load_fixture, model, rules):
    fx = load_fixture(model)
    k = 4
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=rules, device_type="CPU")
    before, after = _ops(fx.graph_def), _ops(out)
    for op in HEAVY:
        assert after[op] == k * before[op], op
        per_device = Counter(n.device for n in out.node if n.op == op)
        if before[op]:
            assert per_device == {f"/device:CPU:{i}": before[op] for i in range(k)}, op


@pytest.mark.parametrize("model", TRAINING_MODELS)
def test_feeds_and_fetches_keep_their_names(load_fixture, model):
    fx = load_fixture(model)
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-nccl")
    nodes = {n.name: n for n in out.node}
    for feed in fx.meta["feeds"]:
        src = next(n for n in fx.graph_def.node if n.name == feed)
        assert nodes[feed].op == src.op and nodes[feed].attr["dtype"] == src.attr["dtype"]
    for name in (fx.train_op, fx.init_op, fx.meta["loss"].split(":")[0]):
        assert name in nodes
    for v in fx.meta["variables"]:
        assert v in nodes and nodes[v].op == next(n.op for n in fx.graph_def.node if n.name == v)


def test_every_node_has_a_device_and_towers_are_named(load_fixture):
    fx = load_fixture("conv_momentum")
    out = graphpass.rewrite(fx.graph_def, devices=3, rules="replicated-nccl")
    assert all(n.device for n in out.node)
    for n in out.node:
        if n.name.startswith("tower2/") and n.op not in ("VarHandleOp",):
            assert n.device in ("/device:GPU:2", "/device:CPU:0"), (n.name, n.device)


def test_nccl_structure(load_fixture):
    fx = load_fixture("mlp_adam")
    k = 4
    out = graphpass.rewrite(fx.graph_def, devices=k, rules="replicated-nccl")
    nccl = [n for n in out.node if n.op == "NcclAllReduce"]
    grads = 4
    assert len(nccl) == k * grads
    by_shared = Counter(n.attr["shared_name"].s for n in nccl)
    assert len(by_shared) == grads and set(by_shared.values()) == {k}
    for n in nccl:
        assert n.attr["num_devices"].i == k and n.attr["reduction"].s == b"sum"
        tower = int(n.name.split("/")[0][len("tower") :])
        assert n.device == f"/device:GPU:{tower}"
        assert n.input[0].startswith(f"tower{tower}/gradients/")


def test_nccl_onto_cpu_is_refused(load_fixture):
    with pytest.raises(graphpass.PassFailedError, match="nccl all-reduce runs on GPUs only"):
        graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, device_type="CPU")


def test_input_graph_is_not_modified(load_fixture):
    fx = load_fixture("mlp_adam")
    before = fx.graph_def.SerializeToString(deterministic=True)
    graphpass.rewrite(fx.graph_def, devices=2)
    assert fx.graph_def.SerializeToString(deterministic=True) == before


def test_rewrite_is_byte_identical_across_runs(load_fixture):
    fx = load_fixture("mlp_clip")
    a = serialize(graphpass.rewrite(fx.graph_def, devices=4, rules="replicated-collective"))
    b = serialize(graphpass.rewrite(fx.graph_def, devices=4, rules="replicated-collective"))
    assert a == b


@pytest.mark.slow
def test_rewrite_is_byte_identical_across_hash_seeds(tmp_path):
    digests = set()
    for seed in ("0", "12345"):
        out = tmp_path / f"out{seed}.pb"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "graphpass",
                "rewrite",
                str(ROOT / "tests/fixtures/conv_momentum.pb"),
                "-o",
                str(out),
                "--devices",
                "4",
                "-q",
            ],
            check=True,
            env=env,
            cwd=tmp_path,
        )
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_parameter_server_device_holds_every_variable(load_fixture):
    from graphpass.pipeline import Pipeline

    fx = load_fixture("mlp_adam")
    rules = Pipeline.from_yaml(
        "passes:\n  - replicate: {mode: parameter_server, ps_device: /cpu:0}\n  - allreduce: {algorithm: naive}\n"
    )
    out = graphpass.rewrite(fx.graph_def, devices=2, rules=rules)
    nodes = {n.name: n for n in out.node}
    for v in fx.meta["variables"]:
        assert nodes[v].device == "/device:CPU:0", v
        assert f"tower1/{v}" not in nodes
    applies = [n for n in out.node if n.op == "ApplyAdam"]
    assert len(applies) == 4 and all(n.device == "/device:CPU:0" for n in applies)
    assert sum(n.op == "MatMul" for n in out.node if n.device == "/device:GPU:1") > 0


@pytest.mark.parametrize(
    "model,rules,k",
    [
        ("conv_momentum", "replicated-collective", 12),
        ("lstm_v1", "ps-least-loaded", 4),
        ("batchnorm", "replicated-hierarchical", 4),
        ("embedding_adam", "replicated-ring", 3),
        ("mlp_adam", "replicated-collective", 2),
        ("mlp_sgd", "replicated-naive", 101),
        ("saver_mlp", "ps-least-loaded", 2),
    ],
)
def test_byte_template_towers_equal_planned_towers(load_fixture, monkeypatch, model, rules, k):
    """Towers renamed from a template's bytes are exactly what building each one would give."""
    _fast_equals_slow(monkeypatch, load_fixture(model).graph_def, devices=k, rules=rules)


def _fast_equals_slow(monkeypatch, graph_def, **options):
    from graphpass.passes import replicate

    def by_name(out):  # the copied towers come last in the output
        out.node.sort(key=lambda n: n.name)
        return serialize(out)

    fast = by_name(graphpass.rewrite(graph_def, **options))
    monkeypatch.setattr(replicate, "COPY_TOWERS", False)
    slow = by_name(graphpass.rewrite(graph_def, **options))
    assert fast == slow


def test_byte_copies_with_mixed_device_types(load_fixture, monkeypatch):
    """Towers on devices of different types: each copy's devices are worked out per node."""
    devices = "/job:worker/replica:0/task:1/device:GPU:3,/device:XLA_GPU:0,/device:CPU:1"
    _fast_equals_slow(
        monkeypatch,
        load_fixture("embedding_adagrad").graph_def,
        devices=devices,
        rules="replicated-hierarchical",
    )


def test_byte_copies_keep_colocation_targets_of_parsed_nodes_parsed(load_fixture, monkeypatch):
    """A global node colocated with a tower node whose copy is colocated further: tower 0's copies
    of both stay parsed (placement reads their devices), and the result is what building gives."""
    gd = graph_pb2.GraphDef()
    gd.CopyFrom(load_fixture("mlp_clip").graph_def)
    node = next(n for n in gd.node if n.name == "global_step/Read/ReadVariableOp")
    node.attr["_class"].list.s[:] = [b"loc:@gradients/mul_grad/tuple/control_dependency"]
    _fast_equals_slow(monkeypatch, gd, devices=3, rules="ps-balanced", device_type="CPU")


def _with_tower_strings(graph_def):
    """`graph_def` with 'tower' where a graph from elsewhere may have it: an unused node named
    like a tower copy's scope, a string constant naming a tower copy (in the tower), a scope
    renamed `tower1/`, and a library function named after a tower."""
    gd = graph_pb2.GraphDef()
    gd.CopyFrom(graph_def)
    gd.node.add(name="notes_tower", op="NoOp")
    text = gd.node.add(name="tower_text", op="Const")
    text.attr["dtype"].type = types_pb2.DT_STRING
    text.attr["value"].tensor.dtype = types_pb2.DT_STRING
    text.attr["value"].tensor.string_val.append(b"tower1/hidden/MatMul tower2/")
    next(n for n in gd.node if n.name == "hidden/MatMul").input.append("^tower_text")
    mapping = {n.name: "tower1" + n.name[len("logits") :] for n in gd.node if n.name.startswith("logits/")}
    for n in gd.node:
        n.name = mapping.get(n.name, n.name)
        n.input[:] = [
            ("^" if r.startswith("^") else "")
            + mapping.get(names.node_of(r), names.node_of(r))
            + (r[len(names.node_of(r)) + (1 if r.startswith("^") else 0) :] if ":" in r else "")
            for r in n.input
        ]
        if "_class" in n.attr:
            n.attr["_class"].list.s[:] = [
                b"loc:@" + mapping.get(s[5:].decode(), s[5:].decode()).encode()
                for s in n.attr["_class"].list.s
            ]
    gd.library.function.add().signature.name = "tower1_fn"
    return gd


@pytest.mark.parametrize(
    "options",
    [
        dict(devices=3, rules="replicated-collective", device_type="CPU"),
        dict(devices=12, rules="replicated-nccl"),
        dict(
            devices="/job:tower1/task:0/device:CPU:0,/job:tower1/task:1/device:CPU:0", rules="ps-least-loaded"
        ),
        dict(
            devices=3, rules="ps-balanced", device_type="CPU", ps_devices=["/job:tower1/task:0/device:CPU:0"]
        ),
    ],
)
def test_tower_strings_in_the_input_change_nothing(load_fixture, monkeypatch, options):
    """Copies rename only what names a tower copy: the same as building every tower, with every
    node on a tower's device or a parameter server, and the input's strings as they were."""
    plain = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, **options)
    assert {n.device for n in plain.node} <= _allowed(options)  # a ps on job tower1 is kept as is
    gd = _with_tower_strings(load_fixture("mlp_sgd").graph_def)
    _fast_equals_slow(monkeypatch, gd, **options)
    out = graphpass.rewrite(gd, **options)
    nodes = {n.name: n for n in out.node}
    from graphpass import devices as devmod

    towers = devmod.parse_devices(options["devices"], options.get("device_type", "GPU"))
    k = len(towers)
    text = [n for n in out.node if n.op == "Const" and n.name.endswith("tower_text")]
    assert [n.name for n in text] == [f"tower{i}/tower_text" for i in range(k)]
    assert all(list(n.attr["value"].tensor.string_val) == [b"tower1/hidden/MatMul tower2/"] for n in text)
    assert all(f"tower{i}/tower1/MatMul" in nodes for i in range(k)) and "tower1/kernel" in nodes
    assert {n.device for n in out.node} <= _allowed(options)


def _allowed(options) -> set[str]:
    """The devices a rewrite with `options` may use: the towers', their hosts', the ps tasks'."""
    from graphpass import devices as devmod

    towers = devmod.parse_devices(options["devices"], options.get("device_type", "GPU"))
    return set(towers) | {devmod.host_of(d) for d in towers} | set(options.get("ps_devices", ()))
