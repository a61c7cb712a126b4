"""inspect, verify, diff, dot, --tensorboard and progress: each command's output on small models."""

from __future__ import annotations

import glob
import io
import json

import pytest

import graphpass
from graphpass import cli
from graphpass.execution import verify_rewrite
from graphpass.pipeline import Pipeline
from graphpass.progress import Progress

from .conftest import FIXTURES, ROOT


def run(capsys, *args):
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def rewritten(tmp_path, load_fixture):
    def make(model="conv_momentum", k=4, rules="replicated-collective"):
        path = tmp_path / f"{model}_{k}_{rules}.pb"
        graphpass.save_graph(graphpass.rewrite(load_fixture(model).graph_def, devices=k, rules=rules), path)
        return path

    return make


def test_inspect_single_tower(capsys):
    code, out, _ = run(capsys, "inspect", str(FIXTURES / "mlp_clip.pb"))
    assert code == 0
    assert "single-tower graph, 213 nodes" in out
    assert "x     Placeholder  float32  [?,10]  split" in out
    assert "fc1/kernel/Adam    slot of fc1/kernel" in out
    assert "gradients/fc1/MatMul_grad/tuple/control_dependency_1  dense  fc1/kernel" in out
    assert "global step   global_step (incremented by train)" in out
    assert "refused       nothing" in out


def test_inspect_json_and_refusals(capsys):
    code, out, _ = run(capsys, "inspect", str(FIXTURES / "embedding_adagrad.pb"), "--json")
    report = json.loads(out)
    assert code == 0 and report["kind"] == "single-tower"
    assert {g["kind"] for g in report["gradients"]} == {"dense", "values", "indices"}
    assert report["refused"] is None
    code, out, _ = run(capsys, "inspect", str(FIXTURES / "inference_mlp.pb"), "--json")
    assert "no optimizer updates" in json.loads(out)["refused"]


def test_inspect_rewritten(capsys, rewritten):
    code, out, _ = run(capsys, "inspect", str(rewritten("mlp_adam", 4, "ps-balanced")), "--json")
    report = json.loads(out)
    assert report["kind"] == "rewritten" and report["towers"] == 4
    assert report["bytes_per_device"] == {
        "/device:GPU:0": 3456,
        "/device:GPU:1": 864,
        "/device:GPU:2": 296,
        "/device:GPU:3": 44,
    }
    assert report["imbalance"] == 1.0  # layer1/kernel with its two Adam slots is the lower bound
    assert report["allreduce"]["algorithms"] == {"naive/colocate": 4}
    code, out, _ = run(capsys, "inspect", str(rewritten("conv_momentum", 4, "replicated-ring")))
    assert "all-reduce: 1 reductions (ring x1) for 5 gradients" in out
    assert "0      /device:GPU:0" in out


def test_verify_passes_a_good_rewrite(capsys, rewritten):
    code, out, _ = run(capsys, "verify", str(FIXTURES / "conv_momentum.pb"), str(rewritten()))
    assert code == 0, out
    assert "4 towers on CPU, 3 steps" in out and "replicas equal" in out and "verify passed" in out
    assert "3 runs from one state give identical results" in out


def test_verify_catches_unaveraged_gradients(capsys, tmp_path, load_fixture):
    rules = Pipeline.from_yaml(
        "passes:\n  - replicate\n  - allreduce: {algorithm: collective, average: false}\n"
    )
    broken = tmp_path / "sum.pb"
    graphpass.save_graph(graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=rules), broken)
    code, out, _ = run(capsys, "verify", str(FIXTURES / "mlp_sgd.pb"), str(broken), "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"] and max(result["max_rel_diff"].values()) > 0.1


def test_verify_catches_diverging_replicas(load_fixture):
    fx = load_fixture("mlp_sgd")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    from tensorflow.python.framework import tensor_util

    for node in out.node:  # tower 1 steps with another learning rate
        if node.name == "tower1/train/learning_rate":
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(0.25, dtype="float32"))
    v = verify_rewrite(fx.graph_def, out)
    assert not v.ok() and "tower1/hidden/bias" in v.comparison.replica_mismatch


def test_verify_reports_a_hanging_all_reduce(load_fixture):
    fx = load_fixture("mlp_sgd")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    for node in out.node:  # tower 1 no longer consumes its collective: tower 0's waits for it
        if node.name == "tower1/train/update_hidden/bias/ApplyGradientDescent":
            node.input[2] = "tower1/gradients/hidden/add_grad/tuple/control_dependency_1"
    v = verify_rewrite(fx.graph_def, out, timeout_s=3)
    assert not v.ok() and "DeadlineExceeded" in v.problems[0]


def test_verify_nccl_is_structural_only(capsys, rewritten):
    code, out, _ = run(
        capsys, "verify", str(FIXTURES / "conv_momentum.pb"), str(rewritten(rules="replicated-nccl"))
    )
    assert code == 0 and "structure only: NcclAllReduce has no CPU kernel" in out
    assert "verify: structure checked; not run" in out and "verify passed" not in out


def test_verify_of_something_that_is_not_a_rewrite(capsys):
    code, out, _ = run(capsys, "verify", str(FIXTURES / "mlp_sgd.pb"), str(FIXTURES / "mlp_sgd.pb"))
    assert code == 1 and "not a rewrite" in out


def test_diff_and_dot_commands(capsys, tmp_path, rewritten):
    a, b = rewritten("mlp_sgd", 2), rewritten("mlp_sgd", 3)
    code, out, _ = run(capsys, "diff", str(a), str(a))
    assert code == 0 and "identical" in out
    code, out, _ = run(capsys, "diff", str(a), str(b), "--max-lines", "5")
    assert code == 1 and "+ tower2/..." in out
    code, out, _ = run(capsys, "dot", str(b), "-o", str(tmp_path / "view.dot"))
    assert code == 0 and (tmp_path / "view.dot").read_text().count("subgraph cluster_tower") == 3


def test_tensorboard_event_file(capsys, tmp_path):
    import tensorflow as tf

    code, _, err = run(
        capsys,
        "rewrite",
        str(FIXTURES / "mlp_sgd.pb"),
        "-o",
        str(tmp_path / "o.pb"),
        "--devices",
        "2",
        "--tensorboard",
        str(tmp_path / "tb"),
        "-q",
    )
    assert code == 0 and err == ""
    (event_file,) = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    graphs = [e.graph_def for e in tf.compat.v1.train.summary_iterator(event_file) if e.graph_def]
    assert len(graphs) == 1
    gd = tf.compat.v1.GraphDef.FromString(graphs[0])
    assert gd == graphpass.load_graph(tmp_path / "o.pb")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_on_a_terminal_only():
    stream = _Tty()
    p = Progress(stream, enabled=True, interval=0)
    p.update("replicate: tower", 3, 8)
    p.finish()
    assert "\rgraphpass: replicate: tower 3/8" in stream.getvalue()
    assert stream.getvalue().endswith("\r")
    quiet = io.StringIO()
    Progress(quiet, enabled=False).update("x", 1, 2)
    assert quiet.getvalue() == ""


def test_rewrite_reports_progress(load_fixture):
    stream = _Tty()
    graphpass.rewrite_with_report(
        load_fixture("mlp_sgd").graph_def, devices=4, progress=Progress(stream, enabled=True, interval=0)
    )
    text = stream.getvalue()
    assert "pass replicate 0/2" in text and "replicate: tower 3/4" in text and "pass allreduce 1/2" in text


def _unseeded(model: str):
    """Fixture `model` built without a graph seed: its initializers draw anew in every session."""
    import importlib.util

    import tensorflow as tf

    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tools" / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    tf.compat.v1.disable_eager_execution()
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.disable_control_flow_v2()
        fixtures.MODELS[model]()
        tf.compat.v1.global_variables_initializer()
    return g.as_graph_def()


@pytest.mark.parametrize("model", ["mlp_sgd", "conv_momentum"])
def test_verify_compares_unseeded_graphs_from_the_same_start(model, tmp_path, capsys):
    original = _unseeded(model)
    out = graphpass.rewrite(original, devices=2, rules="replicated-collective", device_type="CPU")
    v = verify_rewrite(original, out)
    assert v.executed and v.ok(), (v.problems, v.comparison.max_rel_diff)
    assert v.comparison.initial_mismatch  # informational: the two inits drew different values
    graphpass.save_graph(original, tmp_path / "a.pb")
    graphpass.save_graph(out, tmp_path / "b.pb")
    assert verify_rewrite(tmp_path / "a.pb", str(tmp_path / "b.pb")).ok()  # paths too
    code, text, _ = run(capsys, "verify", str(tmp_path / "a.pb"), str(tmp_path / "b.pb"))
    assert (
        code == 0 and "an unseeded graph): both ran from the original's" in text and "verify passed" in text
    )
