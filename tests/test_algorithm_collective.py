"""collective: one CollectiveReduceV2 per device, keys derived from the devices and the gradients;
its own options (communication_hint, group_key, instance_key_base) as a typed dataclass."""

from __future__ import annotations

import re

import pytest

import graphpass
from graphpass.algorithms.collective import CollectiveOptions
from graphpass.errors import ConfigError
from graphpass.pipeline import Pipeline

from .test_algorithms import refuses, training_cases, trains_bucketed, trains_replicated


@pytest.mark.parametrize("model,k,pack", training_cases())
def test_trains_like_one_tower(load_fixture, model, k, pack):
    trains_replicated(load_fixture, "collective", model, k, pack)


def test_trains_bucketed(load_fixture):
    trains_bucketed(load_fixture, "collective")


def test_refuses_parameter_server_mode(load_fixture):
    refuses(load_fixture, "parameter_server", "collective", 2, "use algorithm colocate or naive")


def _rewrite(load_fixture, options: str = "", k: int = 2):
    pipeline = Pipeline.from_yaml(
        f"passes:\n  - replicate\n  - allreduce: {{algorithm: collective{options}}}\n", "r.yaml"
    )
    out = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=k, rules=pipeline, device_type="CPU")
    return [n for n in out.node if n.op == "CollectiveReduceV2"], {n.name: n for n in out.node}


def _const(nodes, ref):
    from tensorflow.python.framework import tensor_util

    return int(tensor_util.MakeNdarray(nodes[ref].attr["value"].tensor))


def test_one_op_per_device_and_gradient_with_derived_keys(load_fixture):
    ops, nodes = _rewrite(load_fixture)
    assert len(ops) == 4 * 2
    assert {n.attr["communication_hint"].s for n in ops} == {b"auto"}
    assert {n.attr["final_op"].s for n in ops} == {b"Div"}
    groups = {_const(nodes, n.input[2]) for n in ops}
    assert len(groups) == 1, "one group key for the device list"
    instances = sorted(_const(nodes, n.input[3]) for n in ops)
    assert len(set(instances)) == 4, "one instance key per gradient, shared by its towers"


def test_options_given_in_the_rules_are_used(load_fixture):
    ops, nodes = _rewrite(load_fixture, ", communication_hint: ring, group_key: 7, instance_key_base: 100")
    assert {n.attr["communication_hint"].s for n in ops} == {b"ring"}
    assert {_const(nodes, n.input[2]) for n in ops} == {7}
    assert sorted({_const(nodes, n.input[3]) for n in ops}) == [100, 101, 102, 103]


def test_options_are_a_typed_frozen_dataclass():
    p = Pipeline.from_yaml("passes:\n  - replicate\n  - allreduce: {algorithm: collective, group_key: 3}\n")
    assert p.passes[1].algorithm_options == CollectiveOptions(group_key=3)
    with pytest.raises(AttributeError):
        p.passes[1].algorithm_options.group_key = 4


@pytest.mark.parametrize(
    "options,match",
    [
        ("group_key: 0", "r.yaml:3: allreduce: collective keys must be positive 31-bit integers"),
        ("instance_key_base: 2147483647", "collective keys must be positive 31-bit integers"),
        (
            "communication_hint: RING",
            "option 'communication_hint' is 'RING'; expected one of auto, ring, nccl",
        ),
        ("group_key: '7'", "option 'group_key' is '7'; expected int (optional)"),
    ],
)
def test_bad_options_are_refused_when_the_rules_load(options, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        Pipeline.from_yaml(
            f"passes:\n  - replicate\n  - allreduce: {{algorithm: collective, {options}}}\n", "r.yaml"
        )


def test_its_options_are_refused_for_other_algorithms():
    with pytest.raises(
        ConfigError, match="r.yaml:3: allreduce: group_key applies to algorithm: collective only, not ring"
    ):
        Pipeline.from_yaml(
            "passes:\n  - replicate\n  - allreduce: {algorithm: ring, group_key: 5}\n", "r.yaml"
        )
    # spelled out at their defaults, they are harmless
    Pipeline.from_yaml("passes:\n  - replicate\n  - allreduce: {algorithm: ring, communication_hint: auto}\n")
