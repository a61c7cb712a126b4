"""hierarchical: AddN within groups of devices on a rotating main device, then across groups."""

from __future__ import annotations

import pytest

import graphpass

from .test_algorithms import refuses, rules, training_cases, trains_bucketed, trains_replicated


@pytest.mark.parametrize("model,k,pack", training_cases())
def test_trains_like_one_tower(load_fixture, model, k, pack):
    trains_replicated(load_fixture, "hierarchical", model, k, pack)


def test_trains_bucketed(load_fixture):
    trains_bucketed(load_fixture, "hierarchical")


def test_rotates_the_main_device(load_fixture):
    out = graphpass.rewrite(
        load_fixture("mlp_adam").graph_def,
        devices=8,
        rules=rules("replicated", "hierarchical"),
        device_type="CPU",
    )
    mains = [n.device for n in out.node if n.name.endswith("/group0_sum")]
    assert mains == ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2", "/device:CPU:3"]
    others = [n.device for n in out.node if n.name.endswith("/group1_sum")]
    assert others == ["/device:CPU:4", "/device:CPU:5", "/device:CPU:6", "/device:CPU:7"]


def test_groups_are_workers_across_machines(load_fixture):
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def,
        devices=3,
        workers=2,
        rules=rules("replicated", "hierarchical"),
        device_type="CPU",
    )
    sums = {
        n.name.rsplit("/", 1)[1]: n.device for n in out.node if n.name.startswith("allreduce/hidden/kernel/")
    }
    assert sums["group0_sum"].startswith("/job:worker/task:0/")
    assert sums["group1_sum"].startswith("/job:worker/task:1/")


def test_refuses_an_odd_device_count_on_one_machine(load_fixture):
    refuses(load_fixture, "replicated", "hierarchical", 3, "even number of devices (got 3)")
