"""Analysis finds inputs, variables, apply ops, raw gradients, step counter, init and train ops."""

from __future__ import annotations

import pytest

from graphpass import analysis
from graphpass.errors import InvalidGraphError
from graphpass.ir.graph import Graph


def _analyze(fx):
    return analysis.analyze(Graph(fx.graph_def))


def test_mlp_sgd(load_fixture):
    a = _analyze(load_fixture("mlp_sgd"))
    assert [i.name for i in a.inputs] == ["x", "y"]
    assert sorted(a.trainable) == ["hidden/bias", "hidden/kernel", "logits/bias", "logits/kernel"]
    assert all(u.op == "ApplyGradientDescent" for u in a.updates)
    assert a.global_step is None and a.train_ops == ["train"] and a.init_ops == ["init"]
    assert a.gradient_scopes == ["gradients"]
    raw = {g.variable: g.tensor for g in a.gradients}
    assert raw["hidden/kernel"] == "gradients/hidden/MatMul_grad/tuple/control_dependency_1"
    assert {g.kind for g in a.gradients} == {"dense"}


def test_resource_momentum_slots_and_step(load_fixture):
    a = _analyze(load_fixture("conv_momentum"))
    assert all(v.resource for v in a.variables.values())
    slots = {v.name: v.slot_of for v in a.variables.values() if v.slot_of}
    assert slots == {f"{t}/Momentum": t for t in a.trainable}
    assert a.global_step == "global_step"
    assert a.variables["conv1/kernel"].nbytes == 3 * 3 * 3 * 8 * 4


def test_adam_beta_powers_are_shared_state(load_fixture):
    a = _analyze(load_fixture("mlp_adam"))
    assert {"beta1_power", "beta2_power"} <= set(a.variables)
    for name in ("beta1_power", "beta2_power"):
        v = a.variables[name]
        assert not v.trainable and not v.slot_of
    assert len(a.replicated_state) == 3 * len(a.trainable)


def test_raw_gradients_are_cut_before_clipping(load_fixture):
    a = _analyze(load_fixture("mlp_clip"))
    assert len(a.gradients) == 4
    for g in a.gradients:
        assert g.tensor.startswith("gradients/"), g.tensor
    for u in a.updates:
        assert len(u.grads) == 1 and any("clip_by_global_norm" in n for n in u.post)


def test_inference_graph_is_refused(load_fixture):
    with pytest.raises(InvalidGraphError, match="no optimizer updates"):
        _analyze(load_fixture("inference_mlp"))


def test_variable_roles_initializers_and_reads(load_fixture):
    a = _analyze(load_fixture("mlp_adam"))
    roles = {v.name: v.role for v in a.variables.values()}
    assert roles["layer1/kernel"] == "trainable" and roles["layer1/kernel/Adam"] == "slot"
    assert roles["beta1_power"] == "optimizer" and roles["global_step"] == "step"
    assert a.variables["layer1/kernel"].initializer == "layer1/kernel/Assign"
    assert "layer1/kernel/read" in a.variables["layer1/kernel"].reads
    assert a.global_step_increment == "train" and a.train_ops == ["train"]
    r = _analyze(load_fixture("mlp_clip"))
    assert r.train_ops == ["train"]
    assert r.variables["fc1/kernel"].initializer == "fc1/kernel/Assign"
