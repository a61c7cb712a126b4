"""Which inputs are the batch (graphpass/batch_inputs.py): decided from the single tower's shapes,
overridable (rules, CLI, API), stated in the summary and in inspect, and trained exactly: class
weights, masks, pretrained tables and scalars whole on every tower; per-example inputs and sparse
batches (by rows) split."""

from __future__ import annotations

import numpy as np
import pytest

import graphpass
from graphpass import batch_inputs, manifest
from graphpass.analysis import analyze
from graphpass.errors import ConfigError, PassFailedError
from graphpass.ir.graph import Graph
from graphpass.shapes import ShapeOracle

from .conftest import ROOT, assert_trains_like

PRESETS = ["replicated-collective", "ps-least-loaded"]


def _decide(fx, split=(), broadcast=()):
    g = Graph(fx.graph_def)
    shapes = ShapeOracle(g.source_bytes(), g.names(), g.versions, g.library)
    return batch_inputs.decide(g, analyze(g, describe=False), shapes, split, broadcast)


@pytest.mark.parametrize(
    "model, split, whole",
    [
        ("mlp_sgd", ["x", "y"], []),
        ("class_weights", ["x", "y"], ["class_weights"]),
        ("side_inputs", ["x", "y", "example_weight"], ["mask", "keep_prob"]),
        ("pretrained_embedding", ["ids", "y"], ["pretrained"]),
        ("sparse_ids", ["ids/indices", "ids/values", "ids/shape", "y"], []),
        ("lstm_v1", ["x", "y"], []),
        ("lstm_v2", ["x", "y"], []),
        ("while_ref", ["x", "y"], []),
        ("mixed_dtypes", ["x", "t"], []),
    ],
)
def test_decided_from_the_shapes(load_fixture, model, split, whole):
    d = _decide(load_fixture(model))
    assert sorted(d.split) == sorted(split)
    assert sorted(d.broadcast) == sorted(whole)
    assert all(r.why for r in d.roles)


def test_the_decision_says_why(load_fixture):
    d = _decide(load_fixture("class_weights"))
    assert "meets 'y'" in d.role("x").why
    assert "never meets the batch" in d.role("class_weights").why
    d = _decide(load_fixture("sparse_ids"))
    assert d.role("ids/indices").sparse == d.sparse[0]
    assert d.sparse[0].members == ("ids/indices", "ids/values", "ids/shape")


def test_prefix_does_not_change_the_decision(load_fixture):
    plain = _decide(load_fixture("side_inputs"))
    under = _decide(load_fixture("side_inputs", "import/"))
    assert [("import/" + r.name, r.split) for r in plain.roles] == [(r.name, r.split) for r in under.roles]


def test_ambiguous_input_is_refused_naming_it_and_the_option(load_fixture):
    fx = load_fixture("reduced_input")
    with pytest.raises(
        PassFailedError,
        match=r"whether 'scale' is a batch input like 'x'.*fit both ways.*split:`/`broadcast:",
    ):
        graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")


@pytest.mark.parametrize(
    "model, split, broadcast, match",
    [
        (
            "mlp_sgd",
            [],
            ["x"],
            r"broadcast: input 'x' is the batch: its first dimension meets that of 'y' at",
        ),
        ("class_weights", ["class_weights"], [], r"split: input 'class_weights' cannot be the batch"),
        ("side_inputs", ["keep_prob"], [], r"'keep_prob' is a scalar"),
        ("mlp_sgd", ["nope"], [], r"split: 'nope' is not an input the training step reads; its inputs: x, y"),
        ("mlp_sgd", ["x"], ["x"], r"'x' is named both"),
    ],
)
def test_choices_that_contradict_the_graph_are_refused(load_fixture, model, split, broadcast, match):
    with pytest.raises(ConfigError, match=match):
        _decide(load_fixture(model), split, broadcast)


def _cli(capsys, *args):
    """graphpass's CLI in this process: (exit code, stdout, stderr)."""
    from graphpass import cli

    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rules_option_cli_flag_and_api_argument_agree(load_fixture, tmp_path, capsys):
    fx = load_fixture("reduced_input")
    rules = tmp_path / "r.yaml"
    rules.write_text("passes:\n  - replicate: {broadcast: [scale]}\n  - allreduce: {algorithm: collective}\n")
    by_rules = graphpass.rewrite(fx.graph_def, devices=2, rules=str(rules), device_type="CPU")
    by_api = graphpass.rewrite(
        fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU", broadcast=["scale"]
    )
    assert by_rules == by_api
    assert manifest.read(by_api).broadcast == ("scale",)
    out = tmp_path / "out.pb"
    cli = ["rewrite", fx.path, "--devices", "2", "--device-type", "CPU", "--rules", "replicated-collective"]
    code, stdout, stderr = _cli(capsys, *cli, "-o", out, "--broadcast", "scale")
    assert code == 0, stderr
    assert "input            scale: whole to every tower; named to broadcast" in stdout
    assert graphpass.load_graph(out) == by_api
    out.unlink()
    code, _, stderr = _cli(capsys, *cli, "-o", out)
    assert code == 2 and not out.exists()
    assert stderr.count("\n") == 1 and "'scale'" in stderr and "--broadcast" in stderr


def test_summary_states_each_input(load_fixture, tmp_path, capsys):
    fx = load_fixture("class_weights")
    out = tmp_path / "o.pb"
    code, stdout, _ = _cli(capsys, "rewrite", fx.path, "--devices", "5", "-o", out)
    assert code == 0
    lines = [line for line in stdout.splitlines() if line.startswith("  input ")]
    assert lines == [
        "  input            x: split (5 shards); meets 'y' at "
        "'SparseSoftmaxCrossEntropyWithLogits/SparseSoftmaxCrossEntropyWithLogits'",
        "  input            y: split (5 shards); meets 'x' at "
        "'SparseSoftmaxCrossEntropyWithLogits/SparseSoftmaxCrossEntropyWithLogits'",
        "  input            class_weights: whole to every tower; its first dimension never meets the "
        "batch of 'x'",
    ]
    _, shown, _ = _cli(capsys, "inspect", out)
    assert "inputs split across the towers: x, y" in shown
    assert "inputs every tower reads whole: class_weights" in shown
    _, single, _ = _cli(capsys, "inspect", fx.path)
    rows = [line.split() for line in single.splitlines() if line.startswith(("  x ", "  y ", "  class_"))]
    assert [row[4] for row in rows] == ["split", "split", "whole"]


def sparse_batches(batch: int, steps: int, seed: int = 0) -> list[dict]:
    """Global batches for sparse_ids: 0 to 3 ids per example (empty rows included), labels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        counts = rng.integers(0, 4, size=batch)
        counts[1] = 0  # an empty row in the first tower's shard, whatever the seed
        indices = [[r, c] for r in range(batch) for c in range(counts[r])]
        out.append(
            {
                "ids/indices": np.array(indices, np.int64).reshape(-1, 2),
                "ids/values": rng.integers(0, 20, size=len(indices)).astype(np.int64),
                "ids/shape": np.array([batch, 4], np.int64),
                "y": rng.integers(0, 3, size=batch).astype(np.int64),
            }
        )
    return out


# (model, K): K = 2 and the K that divides the fixed dimension (or does not: class weights at 4).
CASES = [
    ("class_weights", 5),
    ("class_weights", 4),
    ("class_weights", 2),
    ("side_inputs", 2),
    ("side_inputs", 3),
    ("pretrained_embedding", 2),
    ("pretrained_embedding", 4),
    ("sparse_ids", 2),
    ("sparse_ids", 4),
]


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("model, k", CASES)
def test_trains_like_the_single_tower(load_fixture, model, k, preset):
    fx = load_fixture(model)
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=preset, device_type="CPU")
    batches = sparse_batches(4 * k, 3) if model == "sparse_ids" else fx.batches(4 * k, 3)
    assert_trains_like(fx, out, k, batches)
    assert_trains_like(fx, out, k, batches)  # twice: the step must not depend on timing


@pytest.mark.parametrize("preset", PRESETS)
def test_broadcast_choice_trains_like_the_single_tower(load_fixture, preset):
    fx = load_fixture("reduced_input")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules=preset, device_type="CPU", broadcast="scale")
    assert_trains_like(fx, out, 2, fx.batches(8, 3))


def test_sparse_batch_is_split_by_rows(load_fixture):
    fx = load_fixture("sparse_ids")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    ops = {n.name: n for n in out.node}
    split = [n for n in out.node if n.op == "SparseSplit"]
    assert len(split) == 1 and list(split[0].input[1:4]) == ["ids/indices", "ids/values", "ids/shape"]
    for i in range(2):
        assert ops[f"tower{i}/ids/indices"].input[0] == f"{split[0].name}:{i}".replace(":0", "")
        assert ops[f"tower{i}/ids/shape"].input[0] == f"{split[0].name}:{4 + i}"


@pytest.mark.slow
def test_sparse_rows_that_do_not_divide_are_refused_at_run_time(load_fixture):
    from graphpass.execution import Runner

    fx = load_fixture("sparse_ids")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    runner = Runner(out, num_cpus=2, timeout_s=60)
    runner.run("init")
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="must divide evenly across 2 towers"):
        runner.run("train", sparse_batches(5, 1)[0])


def _queue_graph(staged: bool):
    """An MLP fed from a FIFO queue (dequeue_many) or a staging area (Unstage); the enqueue and
    the stage run outside the train step."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(3)
        fx = tf1.placeholder(tf.float32, [None, 4], name="fx")
        fy = tf1.placeholder(tf.int64, [None], name="fy")
        if staged:
            from tensorflow.python.ops import data_flow_ops

            area = data_flow_ops.StagingArea([tf.float32, tf.int64], shapes=[[2, 4], [2]])
            area.put([fx, fy], name="stage")
            x, y = area.get(name="batch")
        else:
            queue = tf1.FIFOQueue(64, [tf.float32, tf.int64], shapes=[[4], []])
            queue.enqueue_many([fx, fy], name="enqueue")
            queue.size(name="queue_size")
            x, y = queue.dequeue_many(2, name="batch")
        w = tf1.get_variable("w", [4, 3], initializer=tf1.glorot_uniform_initializer())
        logits = tf.matmul(x, w)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
        tf1.global_variables_initializer()
    return g.as_graph_def()


@pytest.mark.parametrize("staged", [False, True], ids=["queue", "staging-area"])
def test_queue_and_staging_inputs_are_drawn_per_tower(staged):
    from graphpass.execution import Runner

    graph_def = _queue_graph(staged)
    out, report = graphpass.rewrite_with_report(
        graph_def, devices=2, rules="replicated-collective", device_type="CPU"
    )
    op = "Unstage" if staged else "QueueDequeueManyV2"
    assert report.inputs.drawn == {"batch": op}
    assert report.inputs.roles == ()  # the placeholders feed the pipeline, not the step
    assert sum(n.op == op for n in out.node) == 2
    rng = np.random.default_rng(0)
    with Runner(out, 2) as multi:
        multi.run("init")
        feeds = {"fx": rng.standard_normal((2, 4)).astype("float32"), "fy": np.array([0, 1], np.int64)}
        for _ in range(2):  # one step takes a batch for each tower
            multi.run("stage" if staged else "enqueue", feeds)
        multi.run("train")
        if not staged:
            assert multi.run("queue_size:0") == 0


def _dataset_graph(batch: int):
    """An MLP fed by tf.data with three components per element: features and labels per example,
    and a class-weight table that is the same for every element (not per example)."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    rng = np.random.default_rng(0)
    features = rng.standard_normal((64, 8)).astype("float32")
    labels = rng.integers(0, 3, 64).astype("int64")
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(5)
        ds = tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(batch)
        ds = ds.map(lambda x, y: (x, y, tf.constant([1.0, 2.0, 3.0])))
        x, y, weights = tf1.data.make_one_shot_iterator(ds).get_next(name="batch")
        w = tf1.get_variable("w", [8, 3], initializer=tf1.glorot_uniform_initializer())
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.matmul(x, w))
        loss = tf.reduce_mean(tf.gather(weights, y) * per_example)
        tf1.train.GradientDescentOptimizer(0.5).minimize(loss, name="train")
        tf1.global_variables_initializer()
    return g.as_graph_def()


@pytest.mark.parametrize("k", [2, 4])
def test_tf_data_element_with_a_component_that_is_not_per_example(k):
    """K towers each drawing a batch of 4 train like one tower drawing 4K: the per-example
    components are the global batch, the weight table the same in every draw."""
    from graphpass.execution import Runner

    out, report = graphpass.rewrite_with_report(
        _dataset_graph(4), devices=k, rules="replicated-collective", device_type="CPU"
    )
    assert report.inputs.drawn == {"batch": "IteratorGetNext"}
    with Runner(_dataset_graph(4 * k)) as single, Runner(out, k) as multi:
        single.run("init")
        multi.run("init")
        for _ in range(3):
            single.run("train")
            multi.run("train")
        want = single.variables(["w"])["w"]
        got = multi.variables(["w"] + [f"tower{i}/w" for i in range(1, k)])
    np.testing.assert_allclose(got["w"], want, rtol=1e-5, atol=1e-6)
    for i in range(1, k):
        np.testing.assert_array_equal(got[f"tower{i}/w"], got["w"])


def _at_fixed_batch(model: str, batch: int):
    """Fixture `model` rebuilt from its model code with every placeholder's unknown first
    dimension fixed to `batch` (as tf_cnn_benchmarks-style scripts build them)."""
    import importlib.util

    import tensorflow as tf

    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tools" / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    tf1 = tf.compat.v1
    plain = tf1.placeholder

    def fixed(dtype, shape=None, name=None):
        if shape is not None and len(shape) and shape[0] is None:
            shape = [batch, *shape[1:]]
        return plain(dtype, shape, name)

    tf1.placeholder = fixed
    try:
        return fixtures.build(model)[0]
    finally:
        tf1.placeholder = plain


@pytest.mark.parametrize("model", ["mlp_sgd", "conv_momentum", "lstm_v1", "embedding_sgd", "mlp_adam"])
@pytest.mark.parametrize("k", [2, 4])
def test_a_fixed_batch_baked_into_the_graph_is_refused_naming_a_node(model, k):
    """Each tower computes with 16/K examples; shapes and constants built for 16 would be wrong
    there (a run-time failure, or a mean's gradient divided by 16): refused, never exit 0."""
    graph_def = _at_fixed_batch(model, 16)
    baked = r"fixed batch of 16 (\('[^']+'\), split \d+ per tower|baked into them)"
    with pytest.raises(PassFailedError, match=baked):
        graphpass.rewrite(graph_def, devices=k, rules="replicated-collective", device_type="CPU")


def test_a_fixed_batch_refusal_through_the_cli(tmp_path, capsys):
    graph = tmp_path / "fixed.pb"
    graphpass.save_graph(_at_fixed_batch("mlp_sgd", 16), graph)
    code, _, stderr = _cli(capsys, "rewrite", graph, "--devices", "4", "-o", tmp_path / "o.pb")
    assert code == 2 and not (tmp_path / "o.pb").exists()
    assert stderr.count("\n") == 1 and "fixed batch of 16 ('x'), split 4 per tower" in stderr
    assert "batch dimension of None" in stderr


def test_a_mask_over_the_sequence_axis_is_not_the_batch():
    """A `[None]` mask of a variable sequence length multiplies axis 1 of a `[None, None]` batch:
    its dimension is a later axis of tensors whose first axis is the batch, so it is broadcast."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, None], name="x")
        mask = tf1.placeholder(tf.float32, [None], name="mask")
        y = tf1.placeholder(tf.float32, [None], name="y")
        w = tf1.get_variable("w", [], initializer=tf1.ones_initializer())
        pred = tf.reduce_sum(x * mask * w, axis=1)
        loss = tf.reduce_mean(tf.square(pred - y))
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    graph_def = g.as_graph_def()
    out, report = graphpass.rewrite_with_report(
        graph_def, devices=2, rules="replicated-collective", device_type="CPU"
    )
    roles = {r.name: r for r in report.inputs.roles}
    assert roles["x"].split and roles["y"].split and not roles["mask"].split
    assert "later axis of 'mul'" in roles["mask"].why and "'x'" in roles["mask"].why
    with pytest.raises(PassFailedError, match="split: input 'mask' cannot be the batch"):
        graphpass.rewrite(
            graph_def, devices=2, rules="replicated-collective", device_type="CPU", split=["mask"]
        )


PER_TOWER = "passes:\n  - replicate: {fixed_batch: per_tower%s}\n  - allreduce: {algorithm: collective}\n"


@pytest.mark.parametrize(
    "model, k",
    [
        ("mlp_sgd", 2),
        pytest.param("mlp_sgd", 4, marks=pytest.mark.slow),
        pytest.param("conv_momentum", 2, marks=pytest.mark.slow),
        pytest.param("embedding_sgd", 2, marks=pytest.mark.slow),
        pytest.param("mlp_adam", 2, marks=pytest.mark.slow),
    ],
)
def test_fixed_batch_per_tower_trains_like_the_model_at_k_times_the_batch(load_fixture, model, k):
    """fixed_batch: per_tower: each tower takes the batch of 8 the graph was built for (its shapes
    and constants stay right), the inputs take 8K; one step equals the model built at 8K."""
    from graphpass.execution import compare
    from graphpass.pipeline import Pipeline

    fx = load_fixture(model)
    rules = Pipeline.from_yaml(PER_TOWER % "")
    out = graphpass.rewrite(_at_fixed_batch(model, 8), devices=k, rules=rules, device_type="CPU")
    x = next(n for n in out.node if n.name == next(iter(fx.meta["feeds"])))
    assert x.attr["shape"].shape.dim[0].size == 8 * k
    result = compare(
        _at_fixed_batch(model, 8 * k), out, k, fx.batches(8 * k, 3), fx.train_op, fx.init_op, 120
    )
    assert result.ok(), (result.max_rel_diff, result.replica_mismatch)


def test_fixed_batch_per_tower_refuses_what_outside_the_towers_carries_the_batch():
    import tensorflow as tf

    from graphpass.pipeline import Pipeline

    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [8, 4], name="x")
        y = tf1.placeholder(tf.int64, [8], name="y")
        w = tf1.get_variable("w", [4, 3])
        logits = tf.matmul(x, w)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        tf.divide(hits, tf.constant(8.0, name="batch_size"), name="accuracy")  # one tower's batch
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    rules = Pipeline.from_yaml(PER_TOWER % "")
    with pytest.raises(
        PassFailedError, match=r"constant 'batch_size' \(read by 'accuracy'\) holds a multiple of"
    ):
        graphpass.rewrite(g.as_graph_def(), devices=2, rules=rules, device_type="CPU")
    # split (the default) refuses it too, naming the tower's constants
    with pytest.raises(
        PassFailedError, match=r"fixed batch of 8 \('x'\), split 4 per tower.*fixed_batch: per_tower"
    ):
        graphpass.rewrite(g.as_graph_def(), devices=2, rules="replicated-collective", device_type="CPU")


@pytest.mark.parametrize("value", [42, [1], b"x", {"x": 1}, [None], "nope", ("x", "x")])
def test_odd_split_arguments_end_in_a_graphpass_error_or_a_rewrite(load_fixture, value):
    fx = load_fixture("mlp_sgd")
    try:
        graphpass.rewrite(
            fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU", split=value
        )
    except graphpass.GraphpassError as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize("model", ["mlp_sgd", "conv_momentum", "lstm_v1"])
def test_a_rewrite_fed_back_without_its_manifest_is_refused_as_replicated(load_fixture, model):
    """Its towers' inputs are shards that meet no more, so the batch decision cannot decide; the
    refusal says what the graph is (its shards hold the names a split gives), not which input to
    split."""
    fx = load_fixture(model)
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    bare = type(out)()
    bare.CopyFrom(out)
    del bare.node[:]
    bare.node.extend(n for n in out.node if not manifest.is_manifest(n))
    with pytest.raises(
        graphpass.GraphpassError, match=r"already has a node named 'tower0/[^']+'.*already replicated"
    ):
        graphpass.rewrite(bare, devices=2, rules="replicated-collective", device_type="CPU")
