"""An input may hold any name: nodes named like every name the passes generate (a split's axis,
an all-reduce's keys, a pack's nodes) change nothing, and the step trains exactly; a node named
like a tower copy (`tower1/<name>`, fixed by the contract) is refused by name."""

from __future__ import annotations

import pytest

import graphpass
from graphpass.naming import parse_tower

from .conftest import Fixture, assert_trains_like

CASES = [
    ("mlp_sgd", "replicated-collective", 2, False),
    ("mlp_adam", "ps-least-loaded", 3, True),
    ("bert_adamw", "replicated-ring", 2, True),
    ("lstm_v1", "replicated-hierarchical", 2, True),
    ("embedding_adam", "replicated-naive", 3, True),
]
PACKED = (
    "passes:\n  - replicate: {}\n  - pack-gradients: {num_split: 2}\n  - allreduce: {algorithm: collective}\n"
)


def _seeded(fx: Fixture, names: list[str]) -> Fixture:
    """The fixture with an unused NoOp named each of `names`."""
    out = Fixture.__new__(Fixture)
    out.meta = fx.meta
    out.graph_def = type(fx.graph_def)()
    out.graph_def.CopyFrom(fx.graph_def)
    for name in names:
        out.graph_def.node.add(name=name, op="NoOp")
    return out


def _generated(fx: Fixture, rules, k: int) -> list[str]:
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=rules, device_type="CPU")
    taken = {n.name for n in fx.graph_def.node}
    return sorted(n.name for n in out.node if n.name not in taken and parse_tower(n.name) is None)


@pytest.mark.parametrize(
    "model,rules,k",
    [pytest.param(m, r, k, marks=pytest.mark.slow if slow else ()) for m, r, k, slow in CASES],
)
def test_nodes_named_like_generated_ones_change_nothing(load_fixture, model, rules, k):
    fx = load_fixture(model)
    generated = _generated(fx, rules, k)
    assert generated  # the split axes, the reductions' scopes, ...
    seeded = _seeded(fx, generated)
    out = graphpass.rewrite(seeded.graph_def, devices=k, rules=rules, device_type="CPU", verify_each=True)
    assert {n for n in generated} <= {n.name for n in out.node}
    assert all(n.op == "NoOp" and not n.input for n in out.node if n.name in set(generated))
    assert_trains_like(seeded, out, k, seeded.batches(2 * k, 2, seed=1))


def test_packed_names_and_the_split_of_the_issue(load_fixture, tmp_path):
    rules = tmp_path / "packed.yaml"
    rules.write_text(PACKED)
    fx = load_fixture("mlp_sgd")
    seeded = _seeded(fx, sorted({"x/split/axis", "y/split", *_generated(fx, str(rules), 2)}))
    out = graphpass.rewrite(
        seeded.graph_def, devices=2, rules=str(rules), device_type="CPU", verify_each=True
    )
    assert_trains_like(seeded, out, 2, seeded.batches(4, 2, seed=2))


def test_a_node_named_like_a_tower_copy_is_refused_by_name(load_fixture):
    seeded = _seeded(load_fixture("mlp_sgd"), ["tower1/hidden/MatMul"])
    with pytest.raises(graphpass.GraphpassError, match="tower1/hidden/MatMul"):
        graphpass.rewrite(seeded.graph_def, devices=2, rules="replicated-collective", device_type="CPU")
