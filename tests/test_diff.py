"""graphpass.diff: added/removed/changed nodes by scope, field-level changes, deterministic text."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from google.protobuf import text_format
from tensorflow.core.framework import graph_pb2, node_def_pb2, tensor_shape_pb2, types_pb2

from graphpass.diff import diff_files, diff_graphs, diff_pbtxt, format_attr, node_changes
from graphpass.errors import InvalidGraphError

from .conftest import ROOT


@pytest.fixture(scope="module")
def collective(load_fixture):
    """mlp_sgd rewritten with replicated-collective for 2 and 3 CPU towers."""
    import graphpass

    g = load_fixture("mlp_sgd").graph_def
    return {
        k: graphpass.rewrite(g, devices=k, rules="replicated-collective", device_type="CPU") for k in (2, 3)
    }


def _node(name, op="Identity", inputs=(), device="", **attrs):
    n = node_def_pb2.NodeDef(name=name, op=op, input=list(inputs), device=device)
    for key, value in attrs.items():
        n.attr[key].CopyFrom(value)
    return n


def _graph(*nodes):
    g = graph_pb2.GraphDef()
    g.node.extend(nodes)
    return g


def _attr(**kw):
    from tensorflow.core.framework import attr_value_pb2

    return attr_value_pb2.AttrValue(**kw)


def test_k2_to_k3_lists_tower2_as_added_and_the_changed_attrs(collective):
    d = diff_graphs(collective[2], collective[3], "k2", "k3")
    tower2 = sorted(n.name for n in collective[3].node if n.name.startswith("tower2/"))
    assert [n.name for n in d.added] == tower2
    assert not d.removed
    text = d.render()
    lines = text.splitlines()
    assert lines[0] == (
        f"k2 -> k3: +{len(tower2)} nodes, -0 nodes, {len(d.changed)} changed "
        f"({len(collective[2].node)} -> {len(collective[3].node)} nodes)"
    )
    # one line for the whole tower2 scope, with its count and device
    assert any(line.startswith(f"  + tower2/...  {len(tower2)} nodes on /device:CPU:2 (") for line in lines)
    assert not any(line.startswith("  + tower2/hidden") for line in lines)
    # changed fields: the split width, the collective group size, the merge's arity and new inputs
    assert "      attr num_split: 2 -> 3" in lines
    assert "      attr value: DT_INT32[] 2 -> DT_INT32[] 3" in lines
    assert "      attr N: 2 -> 3" in lines
    assert "      input +2: tower2/logits/add" in lines
    assert "      control +^tower2/train/update_hidden/kernel/ApplyGradientDescent" in lines
    group_size = next(line for line in lines if "tower0/allreduce/group_size" in line)
    assert group_size.startswith("  ~ ") and "tower1/allreduce/group_size" in group_size
    changed = {c.name: c for c in d.changed}
    assert changed["x/split"].changes == ("attr num_split: 2 -> 3",)
    assert changed["tower0/allreduce/group_size"].changes == ("attr value: DT_INT32[] 2 -> DT_INT32[] 3",)


def test_long_strings_that_differ_late_show_where(collective):
    d = diff_graphs(collective[2], collective[3])
    (msg,) = [c for c in d.changed if c.name == "x/split/check/message"]
    (line,) = msg.changes
    before, after = line.removeprefix("attr value: ").split(" -> ")
    assert before.startswith("...") and "across 2 towers" in before
    assert after.startswith("...") and "across 3 towers" in after


def test_nccl_k2_to_k3_shows_num_devices(load_fixture):
    import graphpass

    g = load_fixture("mlp_sgd").graph_def
    a, b = (graphpass.rewrite(g, devices=k, rules="replicated-nccl") for k in (2, 3))
    text = diff_graphs(a, b).render()
    assert "      attr num_devices: 2 -> 3" in text
    assert "      attr value: DT_FLOAT[] 0.5 -> DT_FLOAT[] 0.33333334" in text


def test_identical_graphs(collective):
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(collective[2])
    d = diff_graphs(collective[2], copy, "golden", "rewrite")
    assert d.identical
    n = len(copy.node)
    assert d.render() == f"golden -> rewrite: graphs are identical ({n} nodes)"
    assert str(d) == d.render()


def test_render_is_deterministic_and_expand_lists_every_node(collective):
    d = diff_graphs(collective[2], collective[3])
    assert d.render() == diff_graphs(collective[2], collective[3]).render()
    expanded = d.render(expand=True).splitlines()
    added = [line for line in expanded if line.startswith("  + ")]
    assert len(added) == len(d.added)
    assert "  + tower2/hidden/MatMul (MatMul on /device:CPU:2)" in expanded
    # nodes with identical changes are listed one by one when expanded
    assert any(line == "  ~ tower1/allreduce/group_size (Const)" for line in expanded)


def test_max_lines_cuts_with_a_note(collective):
    d = diff_graphs(collective[2], collective[3])
    full = d.render().splitlines()
    cut = d.render(max_lines=5).splitlines()
    assert len(cut) == 5
    assert cut[:4] == full[:4]
    assert cut[-1] == f"... {len(full) - 4} more lines"


def test_original_vs_rewrite_groups_removed_scopes(load_fixture, collective):
    original = load_fixture("mlp_sgd").graph_def
    d = diff_graphs(original, collective[2])
    text = d.render()
    grads = [n for n in original.node if n.name.startswith("gradients/")]
    assert any(line.startswith(f"  - gradients/...  {len(grads)} nodes (") for line in text.splitlines())
    assert any(line.startswith("  node order: ") for line in text.splitlines())
    assert "      device: (none) -> /device:CPU:0" in text


def test_input_changes():
    a = _node("n", "AddN", ["a", "b", "^c", "^d"])
    assert node_changes(a, _node("n", "AddN", ["b", "a", "^c", "^d"])) == [
        "inputs reordered: [a, b] -> [b, a]"
    ]
    assert node_changes(a, _node("n", "AddN", ["a", "b:1", "^d", "^e"])) == [
        "input 1: b -> b:1",
        "control -^c",
        "control +^e",
    ]
    assert node_changes(a, _node("n", "AddN", ["a", "^d", "^c"])) == [
        "input -1: b",
        "control inputs reordered",
    ]
    assert node_changes(a, _node("n", "AddN", ["a", "^c", "b", "^d"])) == [
        "inputs: [a, b, ^c, ^d] -> [a, ^c, b, ^d]"
    ]


def test_op_device_and_attr_changes():
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (2, 3)]
    )
    unknown = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1)])
    a = _node(
        "v",
        "VariableV2",
        device="/device:CPU:0",
        dtype=_attr(type=types_pb2.DT_FLOAT),
        shape=_attr(shape=shape),
    )
    b = _node(
        "v",
        "VarHandleOp",
        device="/device:GPU:0",
        dtype=_attr(type=types_pb2.DT_HALF),
        shape=_attr(shape=unknown),
        container=_attr(s=b"c"),
    )
    assert node_changes(a, b) == [
        "op: VariableV2 -> VarHandleOp",
        "device: /device:CPU:0 -> /device:GPU:0",
        'attr +container: "c"',
        "attr dtype: DT_FLOAT -> DT_HALF",
        "attr shape: [2,3] -> [?]",
    ]
    assert node_changes(b, a)[2] == 'attr -container: "c"'


def test_attr_formatting():
    import numpy as np
    from tensorflow.python.framework import tensor_util

    assert format_attr(_attr(i=3)) == "3"
    assert format_attr(_attr(b=True)) == "true"
    assert format_attr(_attr(f=0.1)) == "0.1"
    assert format_attr(_attr(shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True))) == "<unknown>"
    assert format_attr(_attr(shape=tensor_shape_pb2.TensorShapeProto())) == "[]"
    small = tensor_util.make_tensor_proto(np.array([[1, 2], [3, 4]], np.int32))
    assert format_attr(_attr(tensor=small)) == "DT_INT32[2,2] [1, 2, 3, 4]"
    big = tensor_util.make_tensor_proto(np.zeros((784, 10), np.float32))
    text = format_attr(_attr(tensor=big))
    assert text.startswith("DT_FLOAT[784,10] <7840 values sha1:") and text.endswith(">")
    listed = _attr(list=_attr().list.__class__(type=[types_pb2.DT_FLOAT, types_pb2.DT_INT64]))
    assert format_attr(listed) == "[DT_FLOAT, DT_INT64]"
    long = format_attr(_attr(s=b"x" * 200))
    assert len(long) == 60 and long.endswith("...")


def test_big_tensor_changes_show_different_digests():
    import numpy as np
    from tensorflow.python.framework import tensor_util

    t1 = tensor_util.make_tensor_proto(np.zeros((100,), np.float32))
    t2 = tensor_util.make_tensor_proto(np.ones((100,), np.float32))
    (line,) = node_changes(
        _node("c", "Const", value=_attr(tensor=t1)), _node("c", "Const", value=_attr(tensor=t2))
    )
    before, after = line.removeprefix("attr value: ").split(" -> ")
    assert before.startswith("DT_FLOAT[100] <100 values sha1:") and after.startswith(
        "DT_FLOAT[100] <100 values"
    )
    assert before != after


def test_library_versions_and_order_lines():
    a = _graph(_node("a"), _node("b"))
    b = _graph(_node("b"), _node("a"))
    b.versions.producer = 7
    b.library.function.add().signature.name = "f"
    d = diff_graphs(a, b)
    assert not d.identical
    assert d.render().splitlines() == [
        "A -> B: no node differs (2 -> 2 nodes)",
        "  library: functions 0 -> 1; +1 f",
        "  versions: producer 0 -> 7",
        "  node order: the 2 common nodes are in another order (first at 0: 'a' vs 'b')",
    ]


def test_small_scopes_are_listed_node_by_node():
    a = _graph(_node("keep"))
    b = _graph(_node("keep"), *[_node(f"s/n{i}", "Const", device="/cpu:0") for i in range(4)], _node("t"))
    lines = diff_graphs(a, b).render().splitlines()
    assert lines[1:] == ["added (5):"] + [f"  + s/n{i} (Const on /cpu:0)" for i in range(4)] + [
        "  + t (Identity)"
    ]


def test_duplicate_names_are_an_error():
    with pytest.raises(InvalidGraphError, match="two nodes named 'a'"):
        diff_graphs(_graph(_node("a"), _node("a")), _graph())


def test_diff_files_labels_with_paths(tmp_path, collective):
    pa, pb = tmp_path / "a.pbtxt", tmp_path / "b.pb"
    pa.write_text(text_format.MessageToString(collective[2]))
    pb.write_bytes(collective[3].SerializeToString(deterministic=True))
    d = diff_files(pa, pb)
    assert d.summary().startswith(f"{pa} -> {pb}: +")
    assert d.render() == diff_graphs(collective[2], collective[3], str(pa), str(pb)).render()


def test_golden_style_text_diff(collective):
    """What test_golden does on a mismatch: parse both texts, diff, show a bounded report."""
    from graphpass.io import serialize

    want = serialize(collective[2], text=True).decode()
    assert diff_pbtxt(want, want, "golden.pbtxt", "rewrite").identical
    got = want.replace('s: "/device:CPU:1"', 's: "/device:CPU:7"', 1)
    got = got.replace('device: "/device:CPU:1"', 'device: "/device:CPU:7"', 1)
    d = diff_pbtxt(want, got, "golden.pbtxt", "rewrite")
    assert d.summary().startswith("golden.pbtxt -> rewrite: +0 nodes, -0 nodes, 1 changed")
    assert "      device: /device:CPU:1 -> /device:CPU:7" in d.render(max_lines=40)
    with pytest.raises(InvalidGraphError, match="rewrite is not a text GraphDef"):
        diff_pbtxt(want, "node {", "golden.pbtxt", "rewrite")


@pytest.mark.slow
def test_output_is_independent_of_hash_seed(tmp_path, collective):
    """diff and dot text from another process with another PYTHONHASHSEED is byte-identical."""
    from graphpass.dot import to_dot

    pa, pb = tmp_path / "a.pb", tmp_path / "b.pb"
    pa.write_bytes(collective[2].SerializeToString(deterministic=True))
    pb.write_bytes(collective[3].SerializeToString(deterministic=True))
    script = (
        "import sys; from graphpass.diff import diff_files; from graphpass.dot import to_dot; "
        "from graphpass.io import load_graph; "
        "sys.stdout.write(diff_files(sys.argv[1], sys.argv[2]).render(expand=True) + '\\x00' "
        "+ to_dot(load_graph(sys.argv[2]), title='t'))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="12345", TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run(
        [sys.executable, "-c", script, str(pa), str(pb)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    diff_text, dot_text = r.stdout.split("\x00")
    assert diff_text == diff_files(pa, pb).render(expand=True)
    assert dot_text == to_dot(collective[3], title="t")
