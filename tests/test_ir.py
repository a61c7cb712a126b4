"""The IR: reference parsing, use maps kept exact by the Rewriter, deterministic names."""

from __future__ import annotations

import pytest
from tensorflow.core.framework import graph_pb2, node_def_pb2

from graphpass.errors import InternalError, InvalidGraphError
from graphpass.ir import names, verify
from graphpass.ir.graph import Graph
from graphpass.ir.rewriter import Rewriter


def _graph(*nodes):
    gd = graph_pb2.GraphDef()
    for name, op, inputs in nodes:
        gd.node.append(node_def_pb2.NodeDef(name=name, op=op, input=inputs))
    return Graph(gd)


@pytest.mark.parametrize(
    "ref,want",
    [
        ("a", ("a", 0, False)),
        ("a:2", ("a", 2, False)),
        ("^a", ("a", -1, True)),
        ("s/a:b", ("s/a:b", 0, False)),
        ("s/x:10", ("s/x", 10, False)),
    ],
)
def test_parse(ref, want):
    assert tuple(names.parse(ref)) == want
    if not want[2]:
        assert names.tensor(want[0], want[1]) == (
            ref if ":" in ref and ref.rsplit(":", 1)[1].isdigit() else ref
        )


def test_use_maps_follow_rewrites():
    g = _graph(("a", "NoOp", []), ("b", "Identity", ["a"]), ("c", "Identity", ["b", "^a"]))
    rw = Rewriter(g)
    assert g.users("a") == ["b", "c"]
    rw.set_inputs("c", ["a"])
    assert g.users("b") == []
    with pytest.raises(InternalError, match="still used"):
        rw.erase("a")
    rw.erase("b")
    assert "b" not in g
    rw.add("d", "Identity", ["^a", "c"])
    assert list(g.node("d").input) == ["c", "^a"], "control inputs go last"


def test_unique_names_are_deterministic():
    g = _graph(("x", "NoOp", []), ("x_1", "NoOp", []))
    rw = Rewriter(g)
    assert [rw.unique_name("x"), rw.unique_name("x"), rw.unique_name("y")] == ["x_2", "x_3", "y"]


def test_duplicate_names_and_cycles_are_refused():
    with pytest.raises(InvalidGraphError, match="two nodes named 'a'"):
        _graph(("a", "NoOp", []), ("a", "NoOp", []))
    g = _graph(("a", "Identity", ["b"]), ("b", "Identity", ["a"]))
    with pytest.raises(InvalidGraphError, match="cycle through node\\(s\\) a, b"):
        g.check_acyclic()


def test_loop_back_edges_are_not_cycles():
    g = _graph(("m", "Merge", ["e", "n"]), ("e", "Enter", []), ("n", "NextIteration", ["m"]))
    g.check_acyclic()


def test_verify_names_dangling_inputs():
    g = _graph(("a", "Identity", ["ghost"]))
    with pytest.raises(InternalError, match="'a' reads 'ghost'"):
        verify.check(g)


def test_templates_rename_bytes_move_devices_and_refuse_length_changes():
    from graphpass.ir import templates

    long_name = "tower1/" + "y" * 200  # a two-byte length prefix
    nodes = [
        node_def_pb2.NodeDef(name="tower1/a", op="Identity", input=["x/split:1"], device="/device:GPU:1"),
        node_def_pb2.NodeDef(name="tower1/b", op="Identity", input=["tower1/a", long_name + ":1"]),
        node_def_pb2.NodeDef(name="tower1/c", op="NoOp", input=["^tower1/a"], device="/device:GPU:1"),
    ]
    nodes[0].attr["T"].type = 1
    t = templates.template(nodes)
    assert nodes[0].device == "/device:GPU:1", "the template leaves its nodes as they were"

    def copied(devices):
        return graph_pb2.GraphDef.FromString(templates.copy(t, [(b"tower1/", b"tower7/")], devices)).node

    # one device to one device: renamed as whole fields
    a, b, c = copied(["/device:GPU:7", "", "/device:GPU:7"])
    assert [a.name, b.name, c.name] == ["tower7/a", "tower7/b", "tower7/c"]
    assert list(a.input) == ["x/split:1"] and a.device == "/device:GPU:7" and a.attr["T"].type == 1
    assert list(b.input) == ["tower7/a", "tower7/" + "y" * 200 + ":1"] and b.device == ""
    assert list(c.input) == ["^tower7/a"] and c.device == "/device:GPU:7"
    # one device to two, a device where none was, another length: spliced node by node
    a, b, c = copied(["/device:GPU:7", "/device:CPU:0", "/job:worker/task:1/device:GPU:0"])
    assert [a.device, b.device, c.device] == [
        "/device:GPU:7",
        "/device:CPU:0",
        "/job:worker/task:1/device:GPU:0",
    ]
    assert list(b.input) == ["tower7/a", "tower7/" + "y" * 200 + ":1"] and a.attr["T"].type == 1
    # a subset keeps its nodes' bytes
    (only,) = graph_pb2.GraphDef.FromString(
        templates.copy(templates.subset(t, [2]), [], ["/device:GPU:1"])
    ).node
    assert only == nodes[2]
    with pytest.raises(InternalError, match="changes the length"):
        templates.copy(t, [(b"tower1/", b"tower10/")], ["", "", ""])
    # renames apply at once, not in turn: two devices trade places exactly
    swap = templates.template([nodes[0], node_def_pb2.NodeDef(name="d", op="NoOp", device="/device:GPU:7")])
    a, d = graph_pb2.GraphDef.FromString(templates.copy(swap, [], ["/device:GPU:7", "/device:GPU:1"])).node
    assert (a.device, d.device) == ("/device:GPU:7", "/device:GPU:1")
    assert templates.find_all(b"aaaaa", b"aa").tolist() == [0, 2]  # left to right, no overlaps
    assert templates.find_all(b"xtower1/tower1/", b"tower1/").tolist() == [1, 8]
    assert templates.find_all(b"ab", b"abc").tolist() == []
    with pytest.raises(InternalError, match="1 devices for a template of 3 nodes"):
        templates.copy(t, [], [""])


def test_blocks_count_as_nodes_have_twins_and_freeze_their_template():
    from graphpass.io import serialize
    from graphpass.ir import templates
    from graphpass.ir.graph import Block

    gd = graph_pb2.GraphDef()
    gd.node.add(name="x", op="Placeholder").attr["dtype"].type = 1
    a = gd.node.add(name="tower1/a", op="Identity", input=["x"], device="/device:CPU:1")
    a.attr["T"].type = 1
    g = Graph(gd)
    rw = Rewriter(g)
    t = templates.template([g.node("tower1/a")])
    render = lambda: templates.copy(t, [(b"tower1/", b"tower2/")], ["/device:CPU:2"])  # noqa: E731
    g._add_block(Block("tower2/", "tower1/", frozenset({"a"}), render))
    assert "tower2/a" in g and "tower2/b" not in g and "tower3/a" not in g and len(g) == 3
    assert g.twin("tower2/a") is g.node("tower1/a") and g.get("tower2/a") is None
    assert g.producer_op("tower2/a:0") == "Identity"
    assert rw.unique_name("tower2/a") == "tower2/a_1"
    data = g.to_bytes()
    out = graph_pb2.GraphDef.FromString(data)
    assert [(n.name, n.device) for n in out.node] == [
        ("x", ""),
        ("tower1/a", "/device:CPU:1"),
        ("tower2/a", "/device:CPU:2"),
    ]
    assert data == serialize(out), "the bytes are the deterministic serialization"
    with pytest.raises(InternalError, match="template of towers copied as bytes"):
        rw.set_inputs("tower1/a", ["x"])
    with pytest.raises(InternalError, match="template of towers copied as bytes"):
        rw.drop(["tower1/a"])
    rw.set_device("tower1/a", "/device:CPU:3")  # devices may change: copies follow their rules
