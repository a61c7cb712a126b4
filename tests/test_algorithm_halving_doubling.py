"""halving-doubling: recursive halving reduce-scatter, then recursive doubling all-gather (K = 2^n)."""

from __future__ import annotations

import pytest

import graphpass

from .test_algorithms import refuses, rules, training_cases, trains_bucketed, trains_replicated


@pytest.mark.parametrize("model,k,pack", training_cases())
def test_trains_like_one_tower(load_fixture, model, k, pack):
    trains_replicated(load_fixture, "halving-doubling", model, k, pack)


def test_trains_bucketed(load_fixture):
    trains_bucketed(load_fixture, "halving-doubling")


@pytest.mark.parametrize("k,steps", [(2, 1), (4, 2), (8, 3)])
def test_log2_k_exchange_steps_each_way(load_fixture, k, steps):
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def,
        devices=k,
        rules=rules("replicated", "halving-doubling"),
        device_type="CPU",
    )
    scope = "tower0/allreduce/hidden/kernel/"
    halving = {n.name.split("/")[-1].split("_")[0] for n in out.node if n.name.startswith(scope + "halving")}
    doubling = {
        n.name.split("/")[-1].split("_")[0] for n in out.node if n.name.startswith(scope + "doubling")
    }
    assert halving == {f"halving{s}" for s in range(steps)}
    assert doubling == {f"doubling{s}" for s in range(steps)}
    adds = [n for n in out.node if n.op == "AddV2" and n.name.startswith(scope)]
    assert len(adds) == k - 1, "K/2 + K/4 + ... + 1 chunk sums on each device"


@pytest.mark.parametrize("k", [3, 6])
def test_refuses_a_device_count_that_is_not_a_power_of_two(load_fixture, k):
    refuses(load_fixture, "replicated", "halving-doubling", k, f"power-of-two device count (got {k})")
