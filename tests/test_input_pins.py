"""Devices the input already names: a model built under `tf.device("/cpu:0")` spreads over its CPU
towers, one built under `tf.device("/gpu:0")` runs on the CPUs it is rewritten onto, and the
summary says what became of the pins."""

from __future__ import annotations

import collections

import pytest

import graphpass

from .conftest import Fixture, assert_trains_like, unpinned

PRESETS = ["replicated-collective", "ps-least-loaded"]


def _rewrite(fx: Fixture, rules: str, k: int, **kw):
    return graphpass.rewrite_with_report(
        fx.graph_def, devices=k, rules=rules, device_type="CPU", verify_each=True, **kw
    )


@pytest.mark.parametrize("rules", PRESETS)
@pytest.mark.parametrize("model", ["mlp_cpu_pinned", "mlp_gpu_pinned"])
def test_every_tower_computes_on_its_own_cpu(load_fixture, model, rules):
    fx = load_fixture(model)
    assert all(n.device for n in fx.graph_def.node if n.op == "MatMul")
    out, report = _rewrite(fx, rules, 4)
    per_device = collections.Counter(n.device for n in out.node if n.op == "MatMul")
    assert per_device == {f"/device:CPU:{i}": 6 for i in range(4)}
    assert {n.device for n in out.node} <= {f"/device:CPU:{i}" for i in range(4)}
    pinned = sum(1 for n in fx.graph_def.node if n.device)
    (note,) = [n for n in report.notes if n.startswith("input device pins")]
    assert str(pinned) in note


def test_the_summary_counts_pins_kept_and_dropped(load_fixture):
    _, on_cpu = _rewrite(load_fixture("mlp_cpu_pinned"), "replicated-collective", 2)
    _, on_gpu = _rewrite(load_fixture("mlp_gpu_pinned"), "replicated-collective", 2)
    assert any("kept" in n and "pins" in n for n in on_cpu.notes)
    assert any("placed as if unpinned" in n for n in on_gpu.notes)


def test_a_cpu_pin_on_gpu_towers_is_host_work(load_fixture):
    out, _ = graphpass.rewrite_with_report(
        load_fixture("mlp_cpu_pinned").graph_def, devices=2, device_type="GPU"
    )
    devices = {n.device for n in out.node}
    assert devices <= {"/device:GPU:0", "/device:GPU:1", "/device:CPU:0"}
    assert "/device:CPU:0" in devices  # the pinned host work stays on the host


def test_pins_to_other_jobs_are_mapped_onto_the_workers(load_fixture):
    for model in ("mlp_cpu_pinned", "mlp_gpu_pinned"):
        out, _ = _rewrite(load_fixture(model), "replicated-collective", 2, workers=2)
        towers = {f"/job:worker/task:{t}/device:CPU:{d}" for t in range(2) for d in range(2)}
        assert {n.device for n in out.node} <= towers, model


@pytest.mark.slow
@pytest.mark.parametrize("rules", PRESETS)
@pytest.mark.parametrize("model", ["mlp_cpu_pinned", "mlp_gpu_pinned"])
def test_pinned_models_train_exactly(load_fixture, model, rules):
    fx = load_fixture(model)
    out, _ = _rewrite(fx, rules, 4)
    assert_trains_like(unpinned(fx), out, 4, fx.batches(8, 3, seed=3))
