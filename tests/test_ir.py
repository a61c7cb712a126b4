"""The IR: reference parsing, use maps kept exact by the Rewriter, deterministic names."""

from __future__ import annotations

import pytest
from tensorflow.core.framework import graph_pb2, node_def_pb2

import graphpass
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


def test_shared_control_tuples_in_use_index_walks_and_cycles():
    # x and y carry the same control inputs (one shared tuple); z reads p as data and control.
    g = _graph(
        ("p", "NoOp", []),
        ("q", "NoOp", []),
        ("x", "NoOp", ["^p", "^q"]),
        ("y", "NoOp", ["^p", "^q"]),
        ("z", "Identity", ["p", "^p"]),
    )
    assert g.producers("x")[1] is g.producers("y")[1]
    rw = Rewriter(g)
    assert g.users("p") == ["x", "y", "z"] and g.users("q") == ["x", "y"]
    assert g.descendants(["q"]) == {"q", "x", "y"}
    assert g.ancestors(["x", "y"]) == {"p", "q", "x", "y"}
    rw.set_inputs("x", ["^p", "^q"])  # relinked: comes after the others now
    assert g.users("p") == ["y", "z", "x"]
    rw.set_inputs("y", ["^q"])
    assert g.users("p") == ["z", "x"] and g.users("q") == ["x", "y"]
    rw.erase("x")
    assert g.users("p") == ["z"] and g.descendants(["p"]) == {"p", "z"}
    g.check_acyclic()
    # a cycle closed through a shared tuple is found, however many nodes share it
    h = _graph(("a", "NoOp", ["^c"]), ("b", "NoOp", ["^c"]), ("c", "NoOp", ["^b"]))
    with pytest.raises(InvalidGraphError, match="cycle through node\\(s\\) b, c"):
        h.check_acyclic()


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


@pytest.mark.parametrize(
    "model, rules",
    [
        ("conv_momentum", "replicated-collective"),
        ("lstm_v1", "ps-least-loaded"),
        ("batchnorm", "replicated-hierarchical"),
        ("embedding_adagrad", "replicated-collective"),
        ("mlp_clip", "ps-naive"),
    ],
)
def test_every_view_of_the_graph_agrees_after_every_pass(load_fixture, monkeypatch, model, rules):
    """After each pass (verify_each), for every node, copies' nodes included: iteration, len,
    membership and get agree; the cached parse of its inputs and colocation equals a fresh
    reading of the node; and users / colocation_users are exactly the nodes that read it."""
    from graphpass import api

    checked = []
    real_check = api.verify.check

    def check(graph, *args, **kwargs):
        listed = list(graph)
        assert len(listed) == len(set(listed)) == len(graph)
        users: dict[str, set[str]] = {}
        coloc_users: dict[str, set[str]] = {}
        for name in listed:
            assert name in graph
            node = graph.get(name)
            assert node is not None and node.name == name
            refs = list(node.input)
            k = next((j for j, r in enumerate(refs) if r.startswith("^")), len(refs))
            assert graph.producers(name) == (
                tuple(names.node_of(r) for r in refs[:k]),
                tuple(names.node_of(r) for r in refs[k:]),
            ), name
            reads = tuple(
                (names.parse(r).node, names.parse(r).index) for r in refs[:k] if names.parse(r).index
            )
            assert graph.output_reads(name) == reads, name
            assert list(graph.colocation(name)) == names.colocation_targets(node), name
            for r in refs:
                users.setdefault(names.node_of(r), set()).add(name)
            for t in names.colocation_targets(node):
                coloc_users.setdefault(t, set()).add(name)
        for name in set(listed) | set(users) | set(coloc_users):
            assert set(graph.users(name)) == users.get(name, set()), name
            assert set(graph.colocation_users(name)) == coloc_users.get(name, set()), name
        checked.append(len(listed))
        return real_check(graph, *args, **kwargs)

    monkeypatch.setattr(api.verify, "check", check)
    device_type = "CPU" if "nccl" not in rules else "GPU"
    graphpass.rewrite_to_bytes(
        load_fixture(model).path, devices=4, rules=rules, device_type=device_type, verify_each=True
    )
    assert len(checked) >= 3 and checked[0] > 100


@pytest.mark.parametrize(
    "k,rules", [(4, "replicated-nccl"), (12, "replicated-collective"), (3, "ps-least-loaded")]
)
def test_output_written_in_place_is_the_canonical_serialization(load_fixture, k, rules):
    """Towers copied as bytes and patched in the output buffer give exactly what protobuf's
    deterministic serialization of the parsed result gives, through every output call."""
    path = load_fixture("mlp_adam").path
    device_type = "GPU" if "nccl" in rules else "CPU"
    buffer, report = graphpass.rewrite_to_buffer(path, devices=k, rules=rules, device_type=device_type)
    assert type(buffer) is bytearray and report.nodes_out > 2 * report.nodes_in
    parsed = graph_pb2.GraphDef.FromString(buffer)
    assert parsed.SerializeToString(deterministic=True) == buffer
    data, _ = graphpass.rewrite_to_bytes(path, devices=k, rules=rules, device_type=device_type)
    assert type(data) is bytes and data == buffer
    assert graphpass.rewrite(path, devices=k, rules=rules, device_type=device_type) == parsed
    names_ = {n.name for n in parsed.node}
    last = {n[len("tower1/") :] for n in names_ if n.startswith("tower1/")}
    assert last and all(f"tower{k - 1}/{n}" in names_ for n in last)  # the last tower is whole


@pytest.mark.parametrize("moved", ["tower1/hidden/MatMul", "tower2/hidden/MatMul", "tower3/hidden/MatMul"])
def test_changing_one_towers_node_changes_that_node_only(load_fixture, monkeypatch, moved):
    """A pass that moves one tower's node moves that node alone, whether the node is the
    template's or a copy's (a copy's node becomes a node of its own)."""
    from graphpass import api
    from graphpass.ir.rewriter import Rewriter

    real_check = api.verify.check
    seen = []

    def check(graph, *args, **kwargs):
        if not seen and moved in graph:  # right after replicate
            before = {n: graph.get(n).device for n in graph}
            Rewriter(graph).set_device(moved, "/device:GPU:7")
            after = {n: graph.get(n).device for n in graph}
            assert {n for n in before if before[n] != after[n]} == {moved}
            seen.append(before)
        return real_check(graph, *args, **kwargs)

    monkeypatch.setattr(api.verify, "check", check)
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").path, devices=4, rules="replicated-nccl", verify_each=True
    )
    (before,) = seen
    devices = {n.name: n.device for n in out.node}
    assert devices[moved] == "/device:GPU:7"
    for t in range(4):
        name = f"tower{t}/hidden/MatMul"
        if name != moved:
            assert devices[name] == before[name] == f"/device:GPU:{t}", name


def test_replace_all_uses_and_replace_node():
    g = _graph(
        ("a", "Const", []), ("b", "Const", []), ("c", "Identity", ["a"]), ("d", "Identity", ["a", "^a"])
    )
    rw = Rewriter(g)
    assert rw.replace_all_uses("a", "b") == ["c", "d"]
    assert (
        list(g.node("d").input) == ["b", "^b"] and g.users("a") == [] and sorted(g.users("b")) == ["c", "d"]
    )
    rw.replace_node("b", "Identity", ["a"])
    assert g.node("b").op == "Identity" and sorted(g.users("b")) == ["c", "d"] and g.users("a") == ["b"]
    verify.check(g, devices=False)
