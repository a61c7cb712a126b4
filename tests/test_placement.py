"""place-variables: load in bytes, the imbalance figure, strategies, and state following variables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphpass
from graphpass import placement
from graphpass.pipeline import Pipeline

PS2 = ["/device:CPU:0", "/device:CPU:1"]


def place(fx, k, options: str):
    pipeline = Pipeline.from_yaml(
        f"passes:\n  - replicate: {{mode: parameter_server}}\n  - place-variables: {options}\n"
        "  - allreduce: {algorithm: colocate}\n"
    )
    return graphpass.rewrite_with_report(fx.graph_def, devices=k, rules=pipeline, device_type="CPU")


# mlp_wide's variables in graph order, float32 bytes: 4096 256 8192 128 8192 256 2048 32
@pytest.mark.parametrize(
    "strategy,loads,imbalance",
    [
        ("least-loaded", [12416, 10784], 12416 / 11600),
        ("balanced", [12288, 10912], 12288 / 11600),
        ("round-robin", [22528, 672], 22528 / 11600),
    ],
)
def test_imbalance_on_known_sizes(load_fixture, strategy, loads, imbalance):
    _, report = place(load_fixture("mlp_wide"), 2, f"{{strategy: {strategy}}}")
    details = report.passes[1].result.details
    assert list(details["load"].values()) == loads
    assert details["lower_bound"] == 11600  # max(largest 8192, total 23200 / 2)
    assert details["imbalance"] == pytest.approx(imbalance)
    assert f"imbalance {imbalance:.2f}" in report.passes[1].result.summary


def test_small_variables_go_to_one_device(load_fixture):
    out, report = place(
        load_fixture("mlp_wide"), 2, "{strategy: balanced, small_bytes: 300, small_device: /cpu:1}"
    )
    devices = {n.name: n.device for n in out.node}
    for bias in ("l1/bias", "l2/bias", "l3/bias", "l4/bias"):
        assert devices[bias] == "/device:CPU:1"
    assert report.passes[1].result.details["load"] == {
        "/device:CPU:0": 12288,
        "/device:CPU:1": 2048 + 8192 + 672,
    }


def test_state_follows_each_variable(load_fixture):
    fx = load_fixture("mlp_adam")
    out, _ = place(fx, 4, "{strategy: balanced}")
    nodes = {n.name: n for n in out.node}
    for v in ("layer1/kernel", "layer1/bias", "layer2/kernel", "layer2/bias"):
        dev = nodes[v].device
        for follower in (
            f"{v}/Adam",
            f"{v}/Adam_1",
            f"{v}/Assign",
            f"{v}/Adam/Assign",
            f"train/update_{v}/ApplyAdam",
            f"reduced_grads/{v}",
        ):
            assert nodes[follower].device == dev, follower
        for i in range(4):
            assert nodes[f"tower{i}/{v}/read"].device == dev
    used = {nodes[v].device for v in ("layer1/kernel", "layer1/bias", "layer2/kernel", "layer2/bias")}
    assert len(used) > 1, "variables are spread"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=40), st.integers(1, 8))
def test_balanced_is_never_worse_than_least_loaded(sizes, ndev):
    devices = [f"/device:CPU:{i}" for i in range(ndev)]
    greedy = placement.load_of(sizes, placement.assign("least-loaded", sizes, devices), devices)
    best = placement.load_of(sizes, placement.assign("balanced", sizes, devices), devices)
    assert max(best.per_device.values()) <= max(greedy.per_device.values())
    assert best.imbalance >= 1.0 - 1e-9
