"""naive: AddN of every tower's gradient on one device, round-robin over gradients; both modes."""

from __future__ import annotations

import pytest

import graphpass

from .test_algorithms import (
    rules,
    training_cases,
    trains_bucketed,
    trains_parameter_server,
    trains_replicated,
)


@pytest.mark.parametrize("model,k,pack", training_cases())
def test_trains_like_one_tower(load_fixture, model, k, pack):
    trains_replicated(load_fixture, "naive", model, k, pack)


def test_trains_bucketed(load_fixture):
    trains_bucketed(load_fixture, "naive")


@pytest.mark.parametrize("model,k,pack", training_cases(("unpacked", "split", "bucket")))
def test_trains_like_one_tower_with_parameter_servers(load_fixture, model, k, pack):
    trains_parameter_server(load_fixture, "naive", model, k, pack)


def test_sums_each_gradient_once_round_robin(load_fixture):
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def, devices=3, rules=rules("replicated", "naive"), device_type="CPU"
    )
    sums = [n for n in out.node if n.op == "AddN" and n.name.startswith("allreduce/")]
    assert len(sums) == 4 and all(len(n.input) == 3 for n in sums)
    assert [n.device for n in sums] == ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2", "/device:CPU:0"]
