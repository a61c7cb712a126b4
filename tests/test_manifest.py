"""Tower membership is recorded in the output, not read back from names: a model under a scope
named `tower3`, rewritten for 2 towers, is inspected as 2 towers with its canonical variables, and
a graph graphpass has rewritten is refused at once when fed back in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import graphpass
from graphpass import manifest
from graphpass.dot_groups import collapse
from graphpass.execution import tower_count
from graphpass.inspect import inspect_graph

from .conftest import ROOT, Fixture, assert_trains_like, prefixed


def _tower3(load_fixture):
    fx = load_fixture("mlp_sgd")
    case = Fixture.__new__(Fixture)
    case.graph_def = prefixed(fx.graph_def, "tower3/")
    case.meta = {
        "feeds": {f"tower3/{k}": v for k, v in fx.meta["feeds"].items()},
        "train_op": "tower3/" + fx.train_op,
        "init": "tower3/" + fx.init_op,
    }
    return case


def test_a_scope_named_like_a_tower_is_just_a_name(load_fixture):
    case = _tower3(load_fixture)
    out = graphpass.rewrite(case.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    m = manifest.read(out)
    assert m.towers == ("/device:CPU:0", "/device:CPU:1") and m.mode == "replicated"
    assert "tower3/hidden/kernel" in m.foreign and m.tower_of("tower3/hidden/kernel") is None
    assert m.tower_of("tower1/tower3/hidden/kernel") == (1, "tower3/hidden/kernel")
    report = inspect_graph(out)
    assert report["kind"] == "rewritten"
    assert report["towers"] == 2
    assert tower_count(out) == 2
    assert len(collapse(out).towers) == 2


def test_the_cli_inspects_two_towers_and_the_canonical_variables(load_fixture, tmp_path):
    case = _tower3(load_fixture)
    out = graphpass.rewrite(case.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    path = tmp_path / "t3.pb"
    path.write_bytes(out.SerializeToString())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "graphpass", "inspect", str(path)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    assert "2 towers; variables: 4 canonical, 4 replicas" in r.stdout


@pytest.mark.slow
def test_the_tower3_model_trains_exactly(load_fixture):
    case = _tower3(load_fixture)
    out = graphpass.rewrite(case.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    assert_trains_like(case, out, 2, case.batches(4, 3, seed=4))


def test_a_rewritten_graph_is_refused_before_any_analysis(load_fixture):
    out = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=4, rules="replicated-collective")
    with pytest.raises(graphpass.GraphpassError, match="already rewritten by graphpass.*graphpass_manifest"):
        graphpass.rewrite(out, devices=2)


def test_a_graph_without_a_manifest_is_read_by_its_names(load_fixture):
    out = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules="replicated-collective")
    older = type(out)()
    older.CopyFrom(out)
    kept = [n for n in older.node if not manifest.is_manifest(n)]
    del older.node[:]
    older.node.extend(kept)
    assert manifest.read(older) is None
    assert tower_count(older) == 2
    assert inspect_graph(older)["kind"] == "rewritten"


def test_a_manifest_from_another_version_is_not_read():
    assert manifest.Manifest.decode(b'{"version": 99}') is None
    assert manifest.Manifest.decode(b"not json") is None
