"""Real training graphs: control flow (v1 and v2), sparse gradients, clipping, several optimizers,
a Saver, BatchNorm update ops, tf.data input and a Keras ResNet-50."""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pytest

import graphpass
from graphpass.execution import Runner, compare
from graphpass.io import GraphDef

from .conftest import ROOT


def test_v1_loops_get_a_frame_per_tower(load_fixture):
    out = graphpass.rewrite(
        load_fixture("lstm_v1").graph_def, devices=3, rules="replicated-collective", device_type="CPU"
    )
    frames = {}
    for n in out.node:
        if n.op == "Enter":
            frames.setdefault(n.name.split("/")[0], set()).add(n.attr["frame_name"].s.decode())
    assert set(frames) == {"tower0", "tower1", "tower2"}
    for tower, names in frames.items():
        assert all(f.startswith(tower + "/") for f in names)
    assert len(frames["tower0"]) == 2, "the forward loop and the gradient loop"


def test_v2_loops_share_the_function_library(load_fixture):
    fx = load_fixture("lstm_v2")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    assert out.library == fx.graph_def.library
    whiles = Counter(n.op for n in fx.graph_def.node if n.op.endswith("While"))
    assert Counter(n.op for n in out.node if n.op.endswith("While")) == {
        op: 2 * c for op, c in whiles.items()
    }


@pytest.mark.parametrize("model", ["embedding_sgd", "embedding_adagrad", "embedding_adam"])
def test_sparse_gradients_are_gathered_not_densified(load_fixture, model):
    fx = load_fixture(model)
    k = 4
    out, report = graphpass.rewrite_with_report(
        fx.graph_def, devices=k, rules="replicated-collective", device_type="CPU"
    )
    assert "1 sparse gradient gathered" in report.passes[1].result.summary
    nodes = {n.name: n for n in out.node}
    for part in ("values", "indices"):
        gathered = [
            n for n in out.node if n.op == "ConcatV2" and n.name.startswith(f"allreduce/embedding/{part}")
        ]
        assert len(gathered) == 1 and len([i for i in gathered[0].input if "tower" in i]) == k
    assert not any(n.op in ("UnsortedSegmentSum", "ScatterNd") and "allreduce/" in n.name for n in out.node)
    assert "tower1/reduced_grads/embedding/values" in nodes


@pytest.mark.parametrize("model", ["embedding_sgd", "embedding_adagrad"])
@pytest.mark.parametrize("algorithm", ["collective", "ring"])
def test_sparse_gradients_densified_on_request(load_fixture, model, algorithm):
    """For SGD and Adagrad an all-rows update with zero rows is the same update."""
    from graphpass.pipeline import Pipeline

    fx = load_fixture(model)
    rules = Pipeline.from_yaml(
        f"passes:\n  - replicate\n  - allreduce: {{algorithm: {algorithm}, sparse: dense}}\n"
    )
    out = graphpass.rewrite(fx.graph_def, devices=4, rules=rules, device_type="CPU")
    assert sum(n.op == "UnsortedSegmentSum" and "/densify/" in n.name for n in out.node) == 4
    result = compare(fx.graph_def, out, 4, fx.batches(8, 3, seed=2), fx.train_op, fx.init_op)
    assert not result.replica_mismatch and result.worst()[1] <= 1e-5, result.worst()


def test_saver_restores_canonical_variables_and_replicas(load_fixture, tmp_path):
    fx = load_fixture("saver_mlp")
    saver = fx.meta["saver"]
    k = 2
    out = graphpass.rewrite(fx.graph_def, devices=k, rules="replicated-collective", device_type="CPU")
    batches = fx.batches(2 * k, 4, seed=3)
    trained = [v for v in fx.meta["variables"] if v.startswith("layer") and "Adam" not in v]
    ckpt = str(tmp_path / "model.ckpt")
    with Runner(fx.graph_def) as single:  # a checkpoint written by the single-tower graph
        single.run(fx.init_op)
        single.run(fx.train_op, batches[0])
        single.run(saver["save"], {saver["filename"]: ckpt})
        saved = single.variables(trained)
    with Runner(out, k) as multi:
        multi.run(fx.init_op)
        for b in batches[1:]:
            multi.run(fx.train_op, b)
        multi.run(saver["restore"], {saver["filename"]: ckpt})
        values = multi.variables(trained + [f"tower1/{v}" for v in trained])
        for v in trained:
            np.testing.assert_array_equal(values[v], saved[v])
            np.testing.assert_array_equal(values[f"tower1/{v}"], saved[v])
        ckpt2 = str(tmp_path / "again.ckpt")
        multi.run(saver["save"], {saver["filename"]: ckpt2})  # and it saves under the same names
    with Runner(fx.graph_def) as single:
        single.run(saver["restore"], {saver["filename"]: ckpt2})
        for v, value in single.variables(trained).items():
            np.testing.assert_array_equal(value, saved[v])


def _bn_step(fx, out, k, batch):
    stats = [v for v in fx.meta["variables"] if "moving_" in v]
    with Runner(out, k) as multi:
        multi.run(fx.init_op)
        multi.run(fx.train_op, batch)
        after = multi.variables(stats)
    shards = []
    for i in range(k):
        shard = {
            name: value[i * len(value) // k : (i + 1) * len(value) // k] for name, value in batch.items()
        }
        with Runner(fx.graph_def) as single:
            single.run(fx.init_op)
            single.run(fx.train_op, shard)
            shards.append(single.variables(stats))
    return stats, after, shards


def test_batchnorm_statistics_come_from_tower_zero(load_fixture):
    fx = load_fixture("batchnorm")
    k = 2
    out = graphpass.rewrite(fx.graph_def, devices=k, rules="replicated-collective", device_type="CPU")
    updates = [n.name for n in out.node if n.op == "AssignSubVariableOp" and "AssignMovingAvg" in n.name]
    assert updates and all(u.startswith("tower0/") for u in updates), "moving averages update once"
    stats, after, shards = _bn_step(fx, out, k, fx.batches(4 * k, 1, seed=5)[0])
    for v in stats:
        np.testing.assert_allclose(after[v], shards[0][v], rtol=1e-5, atol=1e-6)
    result = compare(fx.graph_def, out, k, fx.batches(4 * k, 3, seed=6), fx.train_op, fx.init_op)
    assert not result.replica_mismatch
    assert all(np.all(np.isfinite(v)) for v in result.final.values())


def test_batchnorm_statistics_can_be_averaged(load_fixture):
    from graphpass.pipeline import Pipeline

    fx = load_fixture("batchnorm")
    k = 2
    rules = Pipeline.from_yaml(
        "passes:\n  - replicate: {shared_updates: mean}\n  - allreduce: {algorithm: collective}\n"
    )
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=rules, device_type="CPU")
    stats, after, shards = _bn_step(fx, out, k, fx.batches(4 * k, 1, seed=5)[0])
    for v in stats:
        np.testing.assert_allclose(after[v], np.mean([s[v] for s in shards], axis=0), rtol=1e-5, atol=1e-6)


def test_each_tower_draws_its_own_batch_from_tf_data(load_fixture):
    fx = load_fixture("iterator_mlp")
    k = 2
    out = graphpass.rewrite(fx.graph_def, devices=k, rules="replicated-collective", device_type="CPU")
    assert sum(n.op == "IteratorGetNext" for n in out.node) == k
    with Runner(fx.graph_def) as single:
        single.run(fx.init_op)
        rows = [single.run("batch:0") for _ in range(2 * k)]
    with Runner(out, k) as multi:
        multi.run(fx.init_op)
        for step in range(2):
            got, _ = multi.run(["batch:0", fx.train_op])
            want = np.concatenate(rows[step * k : (step + 1) * k])
            assert sorted(map(tuple, got)) == sorted(map(tuple, want))


@pytest.mark.slow
def test_keras_resnet50_trains_on_two_towers():
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tools" / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    graph_def, meta = fixtures.build("keras_resnet50")
    k = 2
    out = graphpass.rewrite(graph_def, devices=k, rules="replicated-collective", device_type="CPU")
    rng = np.random.default_rng(0)
    with Runner(out, k) as multi:
        multi.run(meta["init"])
        before = multi.variables([v for v in meta["variables"] if "moving_mean" in v][:3])
        for _ in range(3):
            batch = {
                "images": rng.standard_normal((2 * k, 32, 32, 3)).astype("float32"),
                "labels": rng.integers(0, 10, 2 * k).astype("int32"),
            }
            loss, _ = multi.run([meta["loss"], meta["train_op"].split(":")[0]], batch)
            assert np.isfinite(loss)
        values = multi.variables()
    assert all(np.all(np.isfinite(v)) for v in values.values())
    assert int(values["global_step"]) == 3
    for name, value in values.items():
        if name.startswith("tower1/"):
            np.testing.assert_array_equal(value, values[name[len("tower1/") :]])
    for name, value in before.items():
        assert not np.array_equal(values[name], value), f"{name} was not updated"


def test_scalar_placeholders_are_shared_not_copied():
    """A scalar feed (learning rate, a scale) keeps its name and is read by every tower."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        scale = tf1.placeholder(tf.float32, [], name="scale")
        lr = tf1.placeholder_with_default(0.1, [], name="lr")
        w = tf1.get_variable("w", [3, 1], initializer=tf1.ones_initializer(), use_resource=True)
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) * scale), name="loss")
        tf1.train.GradientDescentOptimizer(lr).minimize(loss, name="train")
        tf1.global_variables_initializer()
    gd = graph.as_graph_def()
    out = graphpass.rewrite(gd, devices=2, rules="replicated-collective", device_type="CPU")
    names = {n.name: n for n in out.node}
    assert names["scale"].op == "Placeholder" and "tower1/scale" not in names and "tower0/lr" not in names
    batch = {"x": np.arange(12, dtype="float32").reshape(4, 3), "scale": np.float32(0.5)}
    with Runner(gd) as single, Runner(out, 2) as multi:
        for r in (single, multi):
            r.run("init")
            r.run("train", {**batch, "lr": np.float32(0.01)})
        np.testing.assert_allclose(multi.variables(["w"])["w"], single.variables(["w"])["w"], rtol=1e-6)


def test_variable_waiting_for_a_tower_node_is_rewritten(load_fixture):
    """A variable created under a control dependency on a tower op (found by fuzzing): after the
    rewrite it waits for every tower's copy, and shape inference still reads the input graph as it
    was (given the rewired variable, TensorFlow refused to import the subset: a regression). The
    graph cannot be initialised (its variable waits for a read of another), so the check is
    structural."""
    gd = GraphDef()
    gd.CopyFrom(load_fixture("mlp_wide").graph_def)
    next(n for n in gd.node if n.name == "l4/bias").input.append("^l2/Relu")
    out = graphpass.rewrite(gd, devices=2, rules="ps-balanced", device_type="CPU", verify_each=True)
    assert {"^tower0/l2/Relu", "^tower1/l2/Relu"} <= set(
        next(n for n in out.node if n.name == "l4/bias").input
    )
