"""Every bad input gets one clear line on stderr, exit code 2, and no (or an untouched) output file;
big inputs are handled or refused clearly; .meta files are accepted."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

import graphpass
from graphpass import cli
from graphpass.execution import Runner, compare

from .conftest import FIXTURES

tf1 = tf.compat.v1


def _graph(build):
    graph = tf.Graph()
    with graph.as_default():
        build()
        tf1.global_variables_initializer()
    return graph.as_graph_def()


def _static_batch():
    x = tf1.placeholder(tf.float32, [6, 4], name="x")
    w = tf1.get_variable("w", [4, 1], use_resource=True)
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.matmul(x, w)), name="train")


def _no_variables():
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    tf.reduce_sum(x * 2.0, name="y")


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        graphpass.save_graph(content, path)
    return path


def _saved_model_dir(tmp_path):
    directory = tmp_path / "sm"
    directory.mkdir()
    (directory / "saved_model.pb").write_bytes(b"x")
    return directory


def _unknown_op():
    gd = graphpass.load_graph(FIXTURES / "mlp_sgd.pb")
    next(n for n in gd.node if n.name == "hidden/MatMul").op = "MyCustomMatMul"
    return gd


def _wrong_arity():
    gd = graphpass.load_graph(FIXTURES / "mlp_sgd.pb")
    del next(n for n in gd.node if n.name == "hidden/MatMul").input[1]
    return gd


VALID = (FIXTURES / "mlp_sgd.pb").read_bytes()

CASES = {
    "empty file": (lambda t: _write(t, "g.pb", b""), [], "is empty"),
    "truncated binary": (
        lambda t: _write(t, "g.pb", VALID[: len(VALID) // 2 + 3]),
        [],
        r"not a binary GraphDef|not in the graph|no graph nodes|reads output",
    ),
    "random bytes": (
        lambda t: _write(t, "g.pb", np.random.default_rng(0).bytes(5000)),
        [],
        "not a binary GraphDef",
    ),
    "text that is not pbtxt": (
        lambda t: _write(t, "g.pbtxt", "node { name: 'x' op: }"),
        [],
        "not a text GraphDef",
    ),
    "pbtxt named .pb": (
        lambda t: _write(
            t, "g.pb", text_format.MessageToString(graphpass.load_graph(FIXTURES / "mlp_sgd.pb"))
        ),
        [],
        "it looks like text: name it .pbtxt",
    ),
    "SavedModel directory": (
        lambda t: _saved_model_dir(t),
        [],
        "is a SavedModel directory; graphpass reads a GraphDef: export one",
    ),
    "graph with no variables": (lambda t: _write(t, "g.pb", _graph(_no_variables)), [], "has no variables"),
    "inference-only graph": (lambda t: FIXTURES / "inference_mlp.pb", [], "no optimizer updates"),
    "unknown op type": (
        lambda t: _write(t, "g.pb", _unknown_op()),
        [],
        "op type 'MyCustomMatMul' which the installed TensorFlow does not register",
    ),
    "an op with too few inputs": (
        lambda t: _write(t, "g.pb", _wrong_arity()),
        [],
        r"node 'hidden/MatMul' \(MatMul\) has 1 data inputs, but the op takes 2",
    ),
    "zero devices": (lambda t: FIXTURES / "mlp_sgd.pb", ["--devices", "0"], "at least 1"),
    "negative devices": (lambda t: FIXTURES / "mlp_sgd.pb", ["--devices=-3"], "at least 1"),
    "duplicated devices": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--devices", "/gpu:1,/device:GPU:1"],
        "listed twice",
    ),
    "one device in two spellings": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--devices", "/job:localhost/replica:0/task:0/device:GPU:1,/gpu:1"],
        r"device /device:GPU:1 is listed twice \(as '/job:localhost/replica:0/task:0/device:GPU:1' and '/gpu:1'\)",
    ),
    "input is a FIFO": (
        lambda t: os.mkfifo(t / "g.pb") or t / "g.pb",
        [],
        r"is a FIFO \(named pipe\), not a GraphDef",
    ),
    "input is a device": (lambda t: "/dev/zero", [], "is a character device, not a GraphDef file"),
    "input from stdin": (lambda t: "-", [], "reading a graph from stdin"),
    "batch not divisible by K": (
        lambda t: _write(t, "g.pb", _graph(_static_batch)),
        ["--devices", "4"],
        "placeholder 'x' has a fixed batch of 6, which does not divide across 4 towers",
    ),
    "malformed YAML": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--rules", "{yaml}passes: [replicate"],
        "malformed YAML",
    ),
    "unknown pass": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--rules", "{yaml}passes: [replicate, compress]"],
        "unknown pass 'compress'",
    ),
    "unknown option": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--rules", "{yaml}passes: [replicate: {modes: x}]"],
        "pass 'replicate' has no option 'modes'; valid options: mode",
    ),
    "alias bomb in the rules": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        [
            "--rules",
            "{yaml}passes: [replicate, allreduce: {algorithm: [&a [x, x, x, x, x, x, x, x], "
            + ", ".join(
                f"&{c} [" + ", ".join([f"*{p}"] * 8) + "]"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "]}]",
        ],
        "refused: its aliases expand to over",
    ),
    "rules nested too deeply": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--rules", "{yaml}passes: " + "[" * 100_000 + "]" * 100_000],
        "refused: nested more than 64 levels deep",
    ),
    "option of the wrong type": (
        lambda t: FIXTURES / "mlp_sgd.pb",
        ["--rules", "{yaml}passes: [replicate, allreduce: {average: 3}]"],
        "expected bool",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_no_output(case, tmp_path, capsys):
    make_input, extra, match = CASES[case]
    inp = make_input(tmp_path)
    args = list(extra)
    if not any(a.startswith("--devices") for a in args):
        args += ["--devices", "2"]
    for i, a in enumerate(args):
        if a.startswith("{yaml}"):
            (tmp_path / "rules.yaml").write_text(a[len("{yaml}") :])
            args[i] = str(tmp_path / "rules.yaml")
    out = tmp_path / "out" / "result.pb"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    code = cli.main(["rewrite", str(inp), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphpass: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert out.read_bytes() == b"an earlier result", "an existing output is never touched by a failed run"
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.pb"], "no temporary files left"


@pytest.mark.parametrize(
    "case,args,match",
    [
        ("output in a missing directory", ["-o", "{tmp}/no/such/dir/x.pb"], "does not exist"),
        ("output equal to input", ["-o", "{input}"], "is the input file"),
    ],
)
def test_bad_output_paths(case, args, match, tmp_path, capsys):
    inp = tmp_path / "m.pb"
    inp.write_bytes(VALID)
    args = [a.replace("{tmp}", str(tmp_path)).replace("{input}", str(inp)) for a in args]
    code = cli.main(["rewrite", str(inp), "--devices", "2", *args])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert inp.read_bytes() == VALID
    assert not (tmp_path / "no").exists()


def test_meta_graph_is_accepted(tmp_path, capsys):
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.graph_def.CopyFrom(graphpass.load_graph(FIXTURES / "mlp_sgd.pb"))
    (tmp_path / "model.meta").write_bytes(meta.SerializeToString())
    code = cli.main(
        ["rewrite", str(tmp_path / "model.meta"), "-o", str(tmp_path / "out.pb"), "--devices", "2", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    assert len(graphpass.load_graph(tmp_path / "out.pb").node) > 200


def test_unknown_shapes_where_packing_needs_them_are_reported(tmp_path, capsys):
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "passes:\n  - replicate\n  - pack-gradients: {num_split: 2, min_pack_elements: 1}\n"
        "  - allreduce: {algorithm: collective}\n"
    )
    code = cli.main(
        [
            "rewrite",
            str(FIXTURES / "mixed_dtypes.pb"),
            "-o",
            str(tmp_path / "o.pb"),
            "--devices",
            "2",
            "--rules",
            str(rules),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "2 gradients in 4 packs, 1 left unpacked" in out
    assert "note             left unpacked: free (no static shape)" in out


def _big_constant():
    x = tf1.placeholder(tf.float32, [None, 512], name="x")
    table = tf.constant(np.linspace(0, 1, 512 * 1024, dtype="float32").reshape(512, 1024), name="table")
    w = tf1.get_variable("w", [1024, 1], initializer=tf1.ones_initializer(), use_resource=True)
    loss = tf.reduce_mean(tf.matmul(tf.matmul(x, table), w), name="loss")
    tf1.train.GradientDescentOptimizer(0.01).minimize(loss, name="train")


def test_big_constants_are_shared_not_copied(tmp_path):
    gd = _graph(_big_constant)  # a 2 MiB constant in the tower
    out = graphpass.rewrite(gd, devices=4, rules="replicated-collective", device_type="CPU")
    tables = [n for n in out.node if n.op == "Const" and n.attr["value"].tensor.ByteSize() > 1 << 20]
    assert [n.name for n in tables] == ["table"]
    assert out.ByteSize() < 3 * gd.ByteSize()
    batch = {"x": np.random.default_rng(1).standard_normal((8, 512)).astype("float32")}
    result = compare(gd, out, 4, [batch] * 2, "train", "init")
    assert not result.replica_mismatch and result.worst()[1] <= 1e-5


def test_outputs_over_the_protobuf_limit_are_refused_before_copying(monkeypatch):
    from graphpass.passes import replicate

    monkeypatch.setattr(replicate, "MAX_GRAPH_BYTES", 4 << 20)
    gd = _graph(_big_constant)
    with pytest.raises(
        graphpass.PassFailedError, match=r"over protobuf's 2 GiB limit .*largest nodes: table"
    ):
        rules = graphpass.Pipeline.from_yaml(
            "passes:\n  - replicate: {share_constants_over: 100000000}\n  - allreduce: {algorithm: collective}\n"
        )
        graphpass.rewrite(gd, devices=8, rules=rules, device_type="CPU")


def test_inputs_over_the_protobuf_limit_are_refused(tmp_path, monkeypatch):
    from graphpass import io

    monkeypatch.setattr(io, "MAX_GRAPH_BYTES", 1000)
    with pytest.raises(graphpass.InvalidGraphError, match="over protobuf's 2 GiB limit"):
        io.load_graph(FIXTURES / "mlp_sgd.pb")


def test_training_still_runs_after_a_refused_rewrite(load_fixture):
    """A refusal leaves nothing half-done behind: the same Python process rewrites the next graph."""
    with pytest.raises(graphpass.GraphpassError):
        graphpass.rewrite(load_fixture("inference_mlp").graph_def, devices=2)
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def, devices=2, rules="replicated-collective", device_type="CPU"
    )
    with Runner(out, 2) as r:
        r.run("init")


def test_internal_errors_say_they_are_bugs_and_exit_1(tmp_path, capsys, monkeypatch):
    from graphpass.passes import allreduce

    def broken(self, ctx):
        raise KeyError("something graphpass did not expect")

    monkeypatch.setattr(allreduce.AllReduce, "run", broken)
    out = tmp_path / "o.pb"
    code = cli.main(["rewrite", str(FIXTURES / "mlp_sgd.pb"), "-o", str(out), "--devices", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "internal error (a bug in graphpass)" in err[0]
    assert "GRAPHPASS_DEBUG=1" in err[0] and not out.exists()
