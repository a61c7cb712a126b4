"""Graphs under a name prefix (what tf.import_graph_def writes: `import/`, or nested scopes) are
rewritten exactly as without it: the same graph up to the prefix, and the same training."""

from __future__ import annotations

import pytest

import graphpass
from graphpass.io import GraphDef
from graphpass.pipeline import preset_names

from .conftest import CPU_PRESETS, EQUIVALENT, PREFIXES, applicable, assert_trains_like

# and the inputs beside the batch (tests/test_batch_inputs.py runs them): decided alike under a prefix
BATCH_INPUTS = ["class_weights", "side_inputs", "pretrained_embedding", "sparse_ids", "reduced_input"]
STRUCTURAL = EQUIVALENT + ["batchnorm", "iterator_mlp"] + BATCH_INPUTS
KEY_INPUTS = {"group_key", "instance_key"}


def canonical(graph_def: GraphDef, prefix: str = "") -> dict:
    """`graph_def` as {name: (op, inputs, device, attrs)} with `prefix` taken out of every string
    (tf.import_graph_def also reorders nodes), collective keys zeroed (they hash the gradients'
    names), and its library's functions by name."""
    from graphpass import opdefs

    def strip(text: str) -> str:
        return text.replace(prefix, "") if prefix else text

    keys = set()
    for n in graph_def.node:
        if n.op.startswith("Collective"):
            keys.update(
                r for a, r in zip(opdefs.input_arg_positions(n), n.input, strict=False) if a in KEY_INPUTS
            )
    out = {}
    for n in graph_def.node:
        attrs = tuple(sorted((k, "key" if n.name in keys else strip(str(v))) for k, v in n.attr.items()))
        out[strip(n.name)] = (n.op, tuple(map(strip, n.input)), n.device, attrs)
    out["<library>"] = tuple(sorted(strip(str(f)) for f in graph_def.library.function))
    return out


def _rewrite(graph_def, rules, k):
    try:
        return graphpass.rewrite(graph_def, devices=k, rules=rules)
    except graphpass.GraphpassError as e:
        return str(e)


FAST = ("mlp_clip", "embedding_adagrad", "lstm_v1", "loss_scale_v2", "accumulate2_v1")


def _structural_cases():
    for model in STRUCTURAL:
        for prefix in PREFIXES:
            for k in (2, 4):
                fast = (prefix, k) == ("import/", 2) and model in FAST
                yield pytest.param(model, prefix, k, marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("model,prefix,k", list(_structural_cases()))
def test_prefixed_rewrite_is_the_unprefixed_one(load_fixture, model, prefix, k):
    """For every preset (nccl and GPU devices included): the same nodes, inputs, devices and
    attributes once the prefix is taken out, or the same refusal."""
    plain, under = load_fixture(model), load_fixture(model, prefix)
    for rules in preset_names():
        want = _rewrite(plain.graph_def, rules, k)
        got = _rewrite(under.graph_def, rules, k)
        if isinstance(want, str) or isinstance(got, str):
            assert isinstance(got, str) and got.replace(prefix, "") == want, rules
            continue
        a, b = canonical(want), canonical(got, prefix)
        if a != b:
            differ = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
            pytest.fail(
                f"{rules}: the rewrite under '{prefix}' differs at {differ[:5]} ({len(differ)} nodes)"
            )


NESTED_PRESETS = ("replicated-collective", "ps-least-loaded")


def _cases():
    """Every fixture under `import/` with every CPU preset at K=2 and 4; under the nested `a/b/`
    with one replicated and one parameter-server preset (the structural test above shows every
    preset's rewrite under it is the unprefixed one, which the unprefixed tests run)."""
    for prefix in PREFIXES:
        for model in EQUIVALENT:
            for rules in CPU_PRESETS if prefix == "import/" else NESTED_PRESETS:
                for k in (2, 4):
                    if applicable(model, rules, k):
                        fast = prefix == "import/" and k == 2 and rules == "replicated-collective"
                        fast = fast and model in FAST
                        yield pytest.param(prefix, model, rules, k, marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("prefix,model,rules,k", list(_cases()))
def test_trains_like_single_tower_under_prefix(load_fixture, prefix, model, rules, k):
    fx = load_fixture(model, prefix)
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=rules, device_type="CPU", verify_each=True)
    nodes = {n.name for n in out.node}
    assert all(f in nodes for f in fx.meta["feeds"]) and fx.train_op in nodes and fx.init_op in nodes
    assert_trains_like(fx, out, k, fx.batches(3 * k, steps=3, seed=k))


@pytest.mark.slow
def test_keras_resnet50_under_a_prefix_is_rewritten_alike():
    """The Keras ResNet-50 (BatchNorm updates as control dependencies, Momentum, a global step):
    under `import/` it was refused (a learning rate taken for a gradient); now the same graph."""
    import importlib.util

    from .conftest import ROOT

    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "tools" / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    from .conftest import prefixed

    graph_def, _ = fixtures.build("keras_resnet50")
    want = graphpass.rewrite(graph_def, devices=2, rules="replicated-collective", device_type="CPU")
    got = graphpass.rewrite(
        prefixed(graph_def, "import/"), devices=2, rules="replicated-collective", device_type="CPU"
    )
    assert canonical(want) == canonical(got, "import/")
