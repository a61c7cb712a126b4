"""Every all-reduce algorithm (except nccl, which has no CPU kernel) trains like the single tower,
with and without gradient packing, in every mode it applies to, at K = 2, 4 and 8."""

from __future__ import annotations

import re
from collections import Counter

import pytest

import graphpass
from graphpass.execution import compare
from graphpass.pipeline import Pipeline

MODELS = [
    "conv_momentum",
    pytest.param("mlp_sgd", marks=pytest.mark.slow),
    pytest.param("mlp_adam", marks=pytest.mark.slow),
]
ALL_REDUCE = ["collective", "hierarchical", "naive", "colocate", "ring", "halving-doubling"]
PACKING = {"unpacked": "", "split": "  - pack-gradients: {num_split: 3, min_pack_elements: 1}\n"}


def rules(mode: str, algorithm: str, pack: str = "", place: str = "") -> Pipeline:
    return Pipeline.from_yaml(
        f"passes:\n  - replicate: {{mode: {mode}}}\n{place}{pack}  - allreduce: {{algorithm: {algorithm}}}\n"
    )


def check(fx, k, pipeline):
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=pipeline, device_type="CPU", verify_each=True)
    result = compare(fx.graph_def, out, k, fx.batches(2 * k, 3, seed=k), fx.train_op, fx.init_op)
    assert not result.missing and not result.initial_mismatch
    assert not result.replica_mismatch
    worst = result.worst()
    assert worst[1] <= 1e-5, f"{worst[0]} differs by {worst[1]:.2e}"
    return out


@pytest.mark.parametrize("pack", list(PACKING))
@pytest.mark.parametrize(
    "k", [2, pytest.param(4, marks=pytest.mark.slow), pytest.param(8, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("algorithm", ALL_REDUCE)
@pytest.mark.parametrize("model", MODELS)
def test_replicated(load_fixture, model, algorithm, k, pack):
    check(load_fixture(model), k, rules("replicated", algorithm, PACKING[pack]))


@pytest.mark.parametrize("algorithm", ALL_REDUCE)
def test_replicated_bucketed(load_fixture, algorithm):
    check(
        load_fixture("conv_momentum"),
        4,
        rules("replicated", algorithm, "  - pack-gradients: {bucket_bytes: 2500}\n"),
    )


PS_PLACE = {
    "first": "",
    "least-loaded": "  - place-variables: {strategy: least-loaded}\n",
    "balanced": "  - place-variables: {strategy: balanced, small_bytes: 64}\n",
}


@pytest.mark.parametrize("pack", ["unpacked", "split", "bucket"])
@pytest.mark.parametrize(
    "k", [2, pytest.param(4, marks=pytest.mark.slow), pytest.param(8, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("algorithm", ["naive", "colocate"])
@pytest.mark.parametrize("model", MODELS)
def test_parameter_server(load_fixture, model, algorithm, k, pack):
    place = list(PS_PLACE.values())[k % 3]
    packing = {**PACKING, "bucket": "  - pack-gradients: {bucket_bytes: 600}\n"}[pack]
    check(load_fixture(model), k, rules("parameter_server", algorithm, packing, place))


def test_mixed_dtypes_and_unknown_shapes(load_fixture):
    fx = load_fixture("mixed_dtypes")
    pipeline = rules("replicated", "collective", "  - pack-gradients: {num_split: 2, min_pack_elements: 1}\n")
    out, report = graphpass.rewrite_with_report(fx.graph_def, devices=4, rules=pipeline, device_type="CPU")
    packed = report.passes[1].result
    assert packed.details == {"packs": 4, "unpacked": ["free"]}
    assert "left unpacked: free (no static shape)" in report.notes
    pack_types = Counter(
        n.attr["T"].type
        for n in out.node
        if n.op == "SplitV"
        and "/grad_packs/" in n.name
        and "/unpack" not in n.name
        and n.name.startswith("tower0/")
    )
    assert len(pack_types) == 2, "one pack group per dtype"
    check(fx, 4, pipeline)


def test_packing_cuts_collective_launches(load_fixture):
    fx = load_fixture("mlp_adam")
    k = 4

    def launches(pack):
        out = graphpass.rewrite(
            fx.graph_def, devices=k, rules=rules("replicated", "collective", pack), device_type="CPU"
        )
        return sum(n.op == "CollectiveReduceV2" for n in out.node)

    assert launches("") == k * 4
    assert launches("  - pack-gradients: {num_split: 2, min_pack_elements: 1}\n") == k * 2
    assert launches("  - pack-gradients: {bucket_bytes: 100000000}\n") == k * 1
    assert launches("  - pack-gradients: {num_split: 8}\n") == k * 1, "under 1024 elements: one pack"


def test_hierarchical_rotates_the_main_device(load_fixture):
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


def test_ring_is_built_from_adds_across_devices(load_fixture):
    k = 4
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def, devices=k, rules=rules("replicated", "ring"), device_type="CPU"
    )
    adds = [n for n in out.node if n.op == "AddV2" and "/allreduce/" in n.name]
    assert len(adds) == 4 * k * (k - 1), "K-1 adds per device per gradient"
    assert not any(n.op.startswith(("Collective", "Nccl")) for n in out.node)


@pytest.mark.parametrize(
    "mode,algorithm,k,match",
    [
        ("replicated", "hierarchical", 3, "even number of devices (got 3)"),
        ("replicated", "halving-doubling", 6, "power-of-two device count (got 6)"),
        ("parameter_server", "ring", 2, "use algorithm colocate or naive"),
        ("parameter_server", "collective", 2, "use algorithm colocate or naive"),
    ],
)
def test_refusals(load_fixture, mode, algorithm, k, match):
    with pytest.raises(graphpass.PassFailedError, match=re.escape(match)):
        graphpass.rewrite(
            load_fixture("mlp_sgd").graph_def, devices=k, rules=rules(mode, algorithm), device_type="CPU"
        )


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "  - replicate\n  - place-variables\n  - allreduce: {algorithm: naive}\n",
            "needs 'replicate' with mode: parameter_server",
        ),
        (
            "  - replicate\n  - allreduce: {algorithm: naive}\n  - pack-gradients\n",
            "put 'pack-gradients' before 'allreduce'",
        ),
        ("  - replicate\n  - pack-gradients: {num_split: 2, bucket_bytes: 9}\n  - allreduce\n", "not both"),
        ("  - replicate\n  - allreduce: {algorithm: naive}\n  - allreduce: {algorithm: naive}\n", None),
    ],
)
def test_pipeline_order_errors(load_fixture, text, match):
    pipeline = Pipeline.from_yaml("passes:\n" + text)
    if match is None:  # a second allreduce finds nothing left to do
        graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")
        return
    with pytest.raises(graphpass.GraphpassError, match=match):
        graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")
