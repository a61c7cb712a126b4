"""colocate: AddN on the device where the gradient is used (the variable's, with parameter servers)."""

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
    trains_replicated(load_fixture, "colocate", model, k, pack)


def test_trains_bucketed(load_fixture):
    trains_bucketed(load_fixture, "colocate")


@pytest.mark.parametrize("model,k,pack", training_cases(("unpacked", "split", "bucket")))
def test_trains_like_one_tower_with_parameter_servers(load_fixture, model, k, pack):
    trains_parameter_server(load_fixture, "colocate", model, k, pack)


def test_sums_on_the_variables_device(load_fixture):
    place = "  - place-variables: {strategy: round-robin}\n"
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def,
        devices=2,
        rules=rules("parameter_server", "colocate", place=place),
        device_type="CPU",
    )
    nodes = {n.name: n for n in out.node}
    sums = [n for n in out.node if n.op == "AddN" and n.name.startswith("allreduce/")]
    assert len(sums) == 4
    for s in sums:
        variable = s.name[len("allreduce/") :].rsplit("/", 1)[0]
        assert s.device == nodes[variable].device
