"""Execution equivalence: K CPU towers train exactly like the single-tower graph on the global batch."""

from __future__ import annotations

import numpy as np
import pytest

import graphpass
from graphpass.analysis import analyze
from graphpass.execution import Runner
from graphpass.ir.graph import Graph

from .conftest import CPU_PRESETS, EQUIVALENT, applicable, assert_trains_like

FAST_PRESETS = ("replicated-collective", "ps-least-loaded")


def _cases(ks=(2, 4)):
    """Every equivalent fixture under every CPU preset at each K; the fast tier keeps K=2 under
    one replicated and one parameter-server preset."""
    for model in EQUIVALENT:
        for preset in CPU_PRESETS:
            for k in ks:
                if applicable(model, preset, k):
                    fast = k == 2 and preset in FAST_PRESETS
                    yield pytest.param(model, preset, k, marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("model,rules,k", list(_cases()))
def test_trains_like_single_tower(load_fixture, model, rules, k):
    fx = load_fixture(model)
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=rules, device_type="CPU", verify_each=True)
    assert_trains_like(fx, out, k, fx.batches(3 * k, steps=3, seed=k))
    if rules.startswith("replicated"):  # every replicated variable has a copy in the last tower
        nodes = {n.name for n in out.node}
        state = analyze(Graph(fx.graph_def)).replicated_state
        assert state and all(f"tower{k - 1}/{v}" in nodes for v in state)


def test_clip_is_active_so_the_cut_matters(load_fixture):
    """mlp_clip only proves the reduction precedes clipping if the clip changes the gradients."""
    fx = load_fixture("mlp_clip")
    norm = next(n.name for n in fx.graph_def.node if n.name.endswith("global_norm/global_norm"))
    with Runner(fx.graph_def) as r:
        r.run(fx.init_op)
        value = r.run(norm + ":0", fx.batches(8, 1)[0])
    assert value > 1.0


@pytest.mark.parametrize("rules", ["replicated-collective", "ps-naive"])
def test_loss_and_accuracy_fetch_the_global_batch_value(load_fixture, rules):
    fx = load_fixture("mlp_sgd")
    k = 4
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=rules, device_type="CPU")
    batch = fx.batches(4 * k, 1, seed=7)[0]
    with Runner(fx.graph_def) as single, Runner(out, k) as multi:
        single.run(fx.init_op)
        multi.run(fx.init_op)
        want = single.run(["loss:0", "accuracy:0"], batch)
        got = multi.run(["loss:0", "accuracy:0"], batch)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        # and after a step, the train op by its original name
        single.run(fx.train_op, batch)
        multi.run(fx.train_op, batch)
        np.testing.assert_allclose(multi.run("loss:0", batch), single.run("loss:0", batch), rtol=1e-5)


def test_batch_not_divisible_fails_with_a_clear_message(load_fixture):
    fx = load_fixture("mlp_sgd")
    out = graphpass.rewrite(fx.graph_def, devices=4, rules="replicated-collective", device_type="CPU")
    import tensorflow as tf

    with Runner(out, 4) as multi:
        multi.run(fx.init_op)
        with pytest.raises(tf.errors.InvalidArgumentError, match="must divide evenly across 4 towers"):
            multi.run(fx.train_op, fx.batches(6, 1)[0])
