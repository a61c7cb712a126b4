"""ring: chunked reduce-scatter then all-gather around the devices, from AddV2/Identity ops."""

from __future__ import annotations

import pytest

import graphpass

from .test_algorithms import refuses, rules, training_cases, trains_bucketed, trains_replicated


@pytest.mark.parametrize("model,k,pack", training_cases())
def test_trains_like_one_tower(load_fixture, model, k, pack):
    trains_replicated(load_fixture, "ring", model, k, pack)


def test_trains_bucketed(load_fixture):
    trains_bucketed(load_fixture, "ring")


def test_is_built_from_adds_across_devices(load_fixture):
    k = 4
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def, devices=k, rules=rules("replicated", "ring"), device_type="CPU"
    )
    adds = [n for n in out.node if n.op == "AddV2" and "/allreduce/" in n.name]
    assert len(adds) == 4 * k * (k - 1), "K-1 adds per device per gradient"
    assert not any(n.op.startswith(("Collective", "Nccl")) for n in out.node)


def test_refuses_parameter_server_mode(load_fixture):
    refuses(load_fixture, "parameter_server", "ring", 2, "use algorithm colocate or naive")
