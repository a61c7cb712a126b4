"""Variables read inside a v1 while_loop in parameter-server mode: the read of a resource handle
that entered the loop frame runs with its variable (TensorFlow refuses it elsewhere), and so does
everything colocated with it, such as the loop gradient's constants."""

from __future__ import annotations

import pytest

import graphpass

from .conftest import assert_trains_like


@pytest.mark.parametrize("rules", ["ps-least-loaded", "ps-naive"])
def test_a_read_inside_the_loop_sits_with_its_variable(load_fixture, rules):
    fx = load_fixture("while_resource")
    out = graphpass.rewrite(fx.graph_def, devices=2, rules=rules, device_type="CPU", verify_each=True)
    nodes = {n.name: n for n in out.node}
    var = nodes["loop/w"].device
    for i in range(2):
        read = nodes[f"tower{i}/while/MatMul/ReadVariableOp"]
        assert read.device == var
        for n in out.node:
            if n.name.startswith(f"tower{i}/") and "_class" in n.attr:
                targets = [t.decode()[5:] for t in n.attr["_class"].list.s]
                if read.name in targets:
                    assert n.device == var, n.name


@pytest.mark.parametrize("model", ["while_ref", "while_resource", "while_read_value"])
def test_loops_reading_variables_train_exactly_on_parameter_servers(load_fixture, model):
    fx = load_fixture(model)
    out = graphpass.rewrite(fx.graph_def, devices=2, rules="ps-least-loaded", device_type="CPU")
    assert_trains_like(fx, out, 2, fx.batches(4, 3, seed=5))
