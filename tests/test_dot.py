"""graphpass.dot: the collapsed DOT view (towers, variables per device, all-reduce, global) and render()."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from graphpass.dot import collapse, render, to_dot
from graphpass.errors import ConfigError
from graphpass.manifest import is_manifest

TOWER_BOX = re.compile(r'"tower(\d+)" \[label="tower \1\\n([^"\\]+)\\n(\d+) nodes?\\nheavy ops: ([^"\\]+)')


@pytest.fixture(scope="module")
def rewrites(load_fixture):
    import graphpass

    g = load_fixture("mlp_sgd").graph_def
    out = {
        k: graphpass.rewrite(g, devices=k, rules="replicated-collective", device_type="CPU") for k in (2, 3)
    }
    out["ps"] = graphpass.rewrite(g, devices=2, rules="ps-balanced", device_type="CPU")
    return out


def _tower_counts(graph_def, k):
    """Nodes of tower i as the view defines them: tower{i}/..., less all-reduce and variables."""
    counts = {}
    for i in range(k):
        prefix = f"tower{i}/"
        counts[i] = sum(
            1
            for n in graph_def.node
            if n.name.startswith(prefix)
            and not n.name.startswith(prefix + "allreduce/")
            and n.op != "VariableV2"
        )
    return counts


@pytest.mark.parametrize("k", [2, 3])
def test_one_cluster_per_tower_with_its_node_count(rewrites, k):
    text = to_dot(rewrites[k], title=f"mlp k={k}")
    assert re.findall(r"subgraph cluster_tower(\d+) \{", text) == [str(i) for i in range(k)]
    boxes = {int(m[0]): (m[1], int(m[2]), m[3]) for m in TOWER_BOX.findall(text)}
    want = _tower_counts(rewrites[k], k)
    assert boxes == {i: (f"/device:CPU:{i}", want[i], "MatMul x6") for i in range(k)}
    assert text.startswith("digraph graphpass {\n") and text.endswith("}\n")
    step = [n for n in rewrites[k].node if not is_manifest(n)]  # the manifest is no part of the step
    assert f'label="mlp k={k}\\n{len(step)} nodes, {k} towers, {4 * k} variables"' in text


def test_variables_cluster_per_device_with_bytes(rewrites):
    text = to_dot(rewrites[2])
    assert "subgraph cluster_variables {" in text
    # bytes from the fixture variables' shape and dtype (all float32)
    view = collapse(rewrites[2])
    per_device = {}
    for n in rewrites[2].node:
        if n.op == "VariableV2":
            size = 4
            for d in n.attr["shape"].shape.dim:
                size *= d.size
            per_device[n.device] = per_device.get(n.device, 0) + size
    assert [(g.device, g.nodes, g.bytes) for g in view.variables] == [
        ("/device:CPU:0", 4, per_device["/device:CPU:0"]),
        ("/device:CPU:1", 4, per_device["/device:CPU:1"]),
    ]
    assert sorted(re.findall(r"subgraph cluster_vars(\d+) \{", text)) == ["0", "1"]
    assert (
        f'"vars1" [label="4 variables\\n2.8 KiB ({per_device["/device:CPU:1"]:,} B)\\ntower1/hidden/bias'
        in text
    )
    # replicas feed their own tower only; the canonical copies also feed init (global)
    assert view.edges[("vars1", "tower1")][0] > 0
    assert ("vars1", "tower0") not in view.edges
    assert ("vars0", "global") in view.edges


def test_allreduce_groups_and_edges(rewrites):
    view = collapse(rewrites[3])
    titles = [g.title for g in view.allreduce]
    assert titles == [
        "allreduce (shared)",
        "allreduce/hidden/bias",
        "allreduce/hidden/kernel",
        "allreduce/logits/bias",
        "allreduce/logits/kernel",
    ]
    kernel = view.allreduce[2]
    assert kernel.lines == ["CollectiveReduceV2 x3", "6 nodes on 3 devices"]
    assert view.allreduce_keys == 4
    for i in range(3):
        assert view.edges[(f"tower{i}", kernel.id)] == (1, 0)  # the raw gradient in
        assert view.edges[(kernel.id, f"tower{i}")] == (1, 0)  # the reduced gradient out
    text = to_dot(rewrites[3])
    assert 'label="all-reduce: 4 reductions, 30 nodes";' in text
    assert f'"tower1" -> "{kernel.id}" [label="1", penwidth=1.0];' in text
    # the shared group_size/group_key constants do not draw an edge to every key
    assert not any(src == view.allreduce[0].id for src, _ in view.edges)


def test_many_keys_collapse_into_one_allreduce_box(rewrites):
    view = collapse(rewrites[2], max_allreduce_groups=3)
    (box,) = view.allreduce
    assert box.title == "allreduce"
    assert box.lines[0] == "CollectiveReduceV2 x8"
    assert '"allreduce0" [label="allreduce\\nCollectiveReduceV2 x8\\n20 nodes on 2 devices"' in to_dot(
        rewrites[2], max_allreduce_groups=3
    )


def test_parameter_server_variables_feed_every_tower(rewrites):
    view = collapse(rewrites["ps"])
    assert len(view.towers) == 2
    assert sum(g.nodes for g in view.variables) == 4
    for g in view.variables:
        assert all(view.edges[(g.id, f"tower{i}")][0] > 0 for i in range(2))
    assert [g.title for g in view.allreduce][-1] == "reduced_grads"


def test_global_and_inputs(rewrites):
    view = collapse(rewrites[2])
    assert view.inputs.lines[:2] == ["2 placeholders: x, y", "split 2 ways"]
    assert view.global_.lines[1].startswith("roots: init, train, accuracy, loss")
    assert view.edges[("tower0", "global")][1] > 0  # train waits on the apply ops
    every = [m for g in view.groups() for m in g.members]
    step = [n.name for n in rewrites[2].node if not is_manifest(n)]
    assert sorted(every) == sorted(step)  # each node of the step in exactly one box


def test_single_tower_graph(load_fixture):
    g = load_fixture("mlp_sgd").graph_def
    view = collapse(g)
    assert view.single_tower
    assert [t.title for t in view.towers] == ["tower 0"]
    assert sorted(view.global_.members) == ["init", "train"]
    text = to_dot(g)
    assert len(re.findall(r"subgraph cluster_tower\d+ \{", text)) == 1
    assert "heavy ops: MatMul x6" in text


def test_deterministic(rewrites):
    assert to_dot(rewrites[3], title="x") == to_dot(rewrites[3], title="x")


def test_labels_are_escaped():
    from tensorflow.core.framework import graph_pb2

    g = graph_pb2.GraphDef()
    g.node.add(name='tower0/a"b\\c', op="NoOp", device="/cpu:0")
    text = to_dot(g, title='say "hi"')
    assert 'label="say \\"hi\\"\\n1 node, 1 tower, 0 variables"' in text


def test_render_without_graphviz_writes_only_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = render("digraph g {}\n", tmp_path / "view")
    assert out.dot == tmp_path / "view.dot" and out.svg is None
    assert "not on PATH" in out.note
    assert out.dot.read_text() == "digraph g {}\n"
    assert not (tmp_path / "view.svg").exists()


def _fake_dot(tmp_path, monkeypatch, body):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "dot"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))


def test_render_runs_dot_for_svg(tmp_path, monkeypatch):
    _fake_dot(tmp_path, monkeypatch, 'test "$1" = -Tsvg && printf "<svg/>" > "$4"\n')
    out = render("digraph g {}\n", tmp_path / "view.svg")
    assert out == type(out)(tmp_path / "view.dot", tmp_path / "view.svg", None)
    assert (tmp_path / "view.svg").read_text() == "<svg/>"


def test_render_reports_a_failing_dot(tmp_path, monkeypatch):
    _fake_dot(tmp_path, monkeypatch, "echo 'Error: syntax error in line 1' >&2\nexit 1\n")
    out = render("digraph g {}\n", tmp_path / "view.dot")
    assert out.svg is None and out.note == "graphviz 'dot' failed: Error: syntax error in line 1"
    assert out.dot.exists()


def test_render_into_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        render("digraph g {}\n", tmp_path / "nope" / "view.dot")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")
def test_graphviz_accepts_the_output(rewrites, tmp_path):
    path = tmp_path / "k3.dot"
    path.write_text(to_dot(rewrites[3]))
    r = subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "<svg" in r.stdout
