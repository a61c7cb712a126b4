"""pack-gradients: packs per dtype, the record of each pack it leaves in the context (what the
allreduce pass and the verifier read), and its options."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import pytest

import graphpass
from graphpass import naming
from graphpass.errors import ConfigError
from graphpass.ir import verify
from graphpass.ir.graph import Graph
from graphpass.passes import Pass, PassResult
from graphpass.pipeline import Pipeline

from .test_algorithms import check, rules

SPLIT2 = "  - pack-gradients: {num_split: 2, min_pack_elements: 1}\n"


@dataclass(frozen=True)
class Capture(Pass):
    """A last pass that keeps the context, for tests."""

    name = "capture"
    requires = ("towers",)
    seen: ClassVar[list] = []

    def run(self, ctx):
        Capture.seen.append(ctx)
        return PassResult(False, "")


def rewrite_with_context(fx, k, pipeline, device_type="CPU"):
    Capture.seen.clear()
    out = graphpass.rewrite(
        fx.graph_def, devices=k, rules=Pipeline(pipeline.passes + [Capture()]), device_type=device_type
    )
    return out, Capture.seen[-1]


def test_the_record_says_what_went_into_each_pack(load_fixture):
    out, ctx = rewrite_with_context(load_fixture("mlp_sgd"), 2, rules("replicated", "ring", SPLIT2))
    (pack,) = ctx.packs
    assert pack.label == "pack0"
    assert set(pack.gradients) == {"hidden/kernel", "hidden/bias", "logits/kernel", "logits/bias"}
    assert sum(pack.sizes) == sum(pack.piece_sizes) and len(pack.piece_sizes) == 2
    assert pack.pieces == ("pack0_0", "pack0_1")
    assert [key for red, _ in ctx.reduced for key in [red.key]] == list(pack.pieces)
    nodes = {n.name: n for n in out.node}
    for i, (concat, split) in enumerate(zip(pack.concats, pack.splits, strict=True)):
        assert nodes[concat].op == "ConcatV2" and nodes[split].op == "SplitV"
        assert concat.startswith(naming.pack_scope(0, i) + "/")
    for o, (split, shaped) in enumerate(zip(pack.unpack_splits, pack.reshapes, strict=True)):
        assert nodes[split].op == "SplitV" and split.startswith(naming.pack_scope(0, o) + "/unpack/")
        assert [nodes[r].op for r in shaped] == ["Reshape"] * 4


def test_names_and_record_agree(load_fixture):
    """The verifier finds a file's packs by name; for a rewrite it reads the record: the same."""
    out, ctx = rewrite_with_context(load_fixture("mlp_adam"), 3, rules("replicated", "naive", SPLIT2))
    g = Graph(out)
    by_op: dict = {}
    for n in g.parsed_nodes():
        by_op.setdefault(n.op, []).append(n)
    found = verify.find_packs(g, by_op)
    want = [(p.label, set(p.splits), set(p.unpack_splits), set(p.reshapes)) for p in ctx.packs]
    assert [(p.label, set(p.splits), set(p.unpack_splits), set(p.reshapes)) for p in found] == want
    verify.check(g, packs=ctx.packs)


def test_the_verifier_reads_the_record(load_fixture):
    from tensorflow.python.framework import tensor_util

    out, ctx = rewrite_with_context(load_fixture("mlp_sgd"), 2, rules("replicated", "ring", SPLIT2))
    sizes = next(n for n in out.node if n.name == f"{naming.pack_scope(0, 1)}/sizes")
    sizes.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto([1, 1]))
    with pytest.raises(graphpass.InternalError, match="gradient pack pack0 is cut into"):
        verify.check(Graph(out), packs=ctx.packs)
    verify.check(Graph(out), packs=[])  # the record is what is checked


def test_one_pack_group_per_dtype_and_unknown_shapes_left_unpacked(load_fixture):
    fx = load_fixture("mixed_dtypes")
    pipeline = rules("replicated", "collective", SPLIT2)
    out, report = graphpass.rewrite_with_report(fx.graph_def, devices=4, rules=pipeline, device_type="CPU")
    assert report.passes[1].result.details == {"packs": 4, "unpacked": ["free"]}
    assert "left unpacked: free (no static shape)" in report.notes
    pack_types = Counter(
        n.attr["T"].type
        for n in out.node
        if n.op == "SplitV"
        and naming.pack_of(n.name)
        and "/unpack" not in n.name
        and n.name.startswith("tower0/")
    )
    assert len(pack_types) == 2, "one pack group per dtype"


@pytest.mark.slow
def test_mixed_dtypes_train_like_one_tower(load_fixture):
    check(load_fixture("mixed_dtypes"), 4, rules("replicated", "collective", SPLIT2))


def test_packing_cuts_reductions(load_fixture):
    fx = load_fixture("mlp_adam")
    k = 4

    def launches(pack):
        out = graphpass.rewrite(
            fx.graph_def, devices=k, rules=rules("replicated", "collective", pack), device_type="CPU"
        )
        return sum(n.op == "CollectiveReduceV2" for n in out.node)

    assert launches("") == k * 4
    assert launches(SPLIT2) == k * 2
    assert launches("  - pack-gradients: {bucket_bytes: 100000000}\n") == k * 1
    assert launches("  - pack-gradients: {num_split: 8}\n") == k * 1, "under 1024 elements: one pack"


def test_buckets_fill_from_the_last_gradient(load_fixture):
    _, ctx = rewrite_with_context(
        load_fixture("mlp_sgd"), 2, rules("replicated", "naive", "  - pack-gradients: {bucket_bytes: 1}\n")
    )
    order = [p.gradients for p in ctx.packs]
    assert all(len(g) == 1 for g in order), "every gradient is over 1 byte: a bucket each"
    assert [g[0] for g in order] == ["logits/bias", "logits/kernel", "hidden/bias", "hidden/kernel"]


@pytest.mark.parametrize(
    "options,match",
    [
        ("{num_split: 2, bucket_bytes: 9}", "give num_split or bucket_bytes, not both"),
        ("{num_split: 0}", "num_split must be at least 1"),
        ("{bucket_bytes: 0}", "bucket_bytes must be at least 1"),
        ("{min_pack_elements: 0}", "min_pack_elements must be at least 1"),
    ],
)
def test_option_refusals(load_fixture, options, match):
    pipeline = Pipeline.from_yaml(f"passes:\n  - replicate\n  - pack-gradients: {options}\n  - allreduce\n")
    with pytest.raises(graphpass.PassFailedError, match=match):
        graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "  - pack-gradients\n  - replicate\n",
            "r.yaml:2: 'pack-gradients' needs a 'replicate' pass before it",
        ),
        (
            "  - replicate\n  - allreduce\n  - pack-gradients\n",
            "r.yaml:4: put 'pack-gradients' before 'allreduce' (r.yaml:3)",
        ),
        (
            "  - replicate\n  - pack-gradients\n  - pack-gradients\n  - allreduce\n",
            "r.yaml:4: 'pack-gradients' may appear only once",
        ),
    ],
)
def test_order_is_checked_when_the_rules_load(text, match):
    with pytest.raises(ConfigError) as e:
        Pipeline.from_yaml("passes:\n" + text, "r.yaml")
    assert match in str(e.value)
