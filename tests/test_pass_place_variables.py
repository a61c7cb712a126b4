"""place-variables: what it declares, where it may go in a pipeline, and what it moves (the
placement strategies themselves are tested in test_placement.py)."""

from __future__ import annotations

import pytest

import graphpass
from graphpass.errors import ConfigError
from graphpass.passes import REGISTRY
from graphpass.pipeline import Pipeline

PS = "  - replicate: {mode: parameter_server}\n"


def rewrite(fx, place: str, k: int = 2):
    pipeline = Pipeline.from_yaml(
        f"passes:\n{PS}  - place-variables: {place}\n  - allreduce: {{algorithm: colocate}}\n"
    )
    return graphpass.rewrite_with_report(fx.graph_def, devices=k, rules=pipeline, device_type="CPU")


def test_declarations():
    cls = REGISTRY["place-variables"]
    assert cls.requires == ("towers",) and cls.provides == ("variable-placement",)


def test_a_variable_its_slots_and_its_update_share_a_device(load_fixture):
    out, _ = rewrite(load_fixture("mlp_adam"), "{strategy: round-robin}")
    nodes = {n.name: n for n in out.node}
    kernel = nodes["layer1/kernel"].device
    assert {nodes[f"layer1/kernel/{s}"].device for s in ("Adam", "Adam_1")} == {kernel}
    updates = [n for n in out.node if n.op.startswith("Apply") and n.input[0] == "layer1/kernel"]
    assert updates and {n.device for n in updates} == {kernel}
    assert len({nodes[v].device for v in ("layer1/kernel", "layer1/bias", "layer2/kernel")}) == 2


def test_small_variables_go_to_small_device(load_fixture):
    out, report = rewrite(load_fixture("mlp_sgd"), "{small_bytes: 100000, small_device: /cpu:1}")
    nodes = {n.name: n for n in out.node}
    assert {nodes[v].device for v in ("hidden/kernel", "hidden/bias")} == {"/device:CPU:1"}
    assert report.passes[1].result.details["load"]["/device:CPU:0"] == 0


def test_refuses_replicated_mode(load_fixture):
    pipeline = Pipeline.from_yaml(
        "passes:\n  - replicate\n  - place-variables\n  - allreduce: {algorithm: naive}\n"
    )
    with pytest.raises(graphpass.PassFailedError, match="needs 'replicate' with mode: parameter_server"):
        graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")


def test_refuses_a_negative_small_bytes(load_fixture):
    with pytest.raises(graphpass.PassFailedError, match="small_bytes must be 0 or more"):
        rewrite(load_fixture("mlp_sgd"), "{small_bytes: -1}")


@pytest.mark.parametrize(
    "text,match",
    [
        ("  - place-variables\n" + PS, "r.yaml:2: 'place-variables' needs a 'replicate' pass before it"),
        (
            PS + "  - place-variables\n  - place-variables\n",
            "r.yaml:4: 'place-variables' may appear only once (also at r.yaml:3)",
        ),
    ],
)
def test_order_is_checked_when_the_rules_load(text, match):
    with pytest.raises(ConfigError) as e:
        Pipeline.from_yaml("passes:\n" + text, "r.yaml")
    assert match in str(e.value)
