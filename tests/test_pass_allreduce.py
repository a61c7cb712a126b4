"""allreduce: its own options and the algorithms' (from the registry), what it declares, and how it
rewires each reduction's outputs."""

from __future__ import annotations

import re

import pytest

import graphpass
from graphpass import algorithms
from graphpass.algorithms.collective import CollectiveOptions
from graphpass.errors import ConfigError
from graphpass.passes import REGISTRY
from graphpass.passes.allreduce import AllReduce
from graphpass.pipeline import Pipeline

from .test_algorithms import rules


def test_declarations():
    assert AllReduce.requires == ("towers",) and AllReduce.provides == ("reduced-gradients",)


def test_options_list_the_algorithms_own_with_who_takes_them():
    opts = {o.name: o for o in REGISTRY["allreduce"].options()}
    assert list(opts)[:3] == ["algorithm", "average", "sparse"]
    for name, (opt, takers) in algorithms.all_options().items():
        assert opts[name].help.startswith(f"{', '.join(takers)} only: ")
        assert opts[name].default == opt.default
    assert "algorithm_options" not in opts, "the typed options are not a YAML key"


def test_python_callers_get_typed_options():
    p = AllReduce(algorithm="collective", algorithm_options=CollectiveOptions(communication_hint="nccl"))
    assert p.algorithm_options.communication_hint == "nccl"
    with pytest.raises(ConfigError, match="algorithm naive takes none as its options, not CollectiveOptions"):
        AllReduce(algorithm="naive", algorithm_options=CollectiveOptions())
    with pytest.raises(ConfigError, match="unknown all-reduce algorithm 'x'"):
        AllReduce(algorithm="x")


def test_every_output_reads_its_reduction(load_fixture):
    out = graphpass.rewrite(
        load_fixture("mlp_sgd").graph_def, devices=2, rules=rules("replicated", "naive"), device_type="CPU"
    )
    nodes = {n.name: n for n in out.node}
    for tower in ("tower0/", "tower1/"):
        sink = nodes[f"{tower}reduced_grads/hidden/kernel"]
        source = nodes[sink.input[0].split(":")[0]]
        assert source.name.startswith("allreduce/hidden/kernel/")


@pytest.mark.parametrize(
    "pack,summary",
    [
        ("", "4 gradients averaged with ring"),
        (
            "  - pack-gradients: {num_split: 2, min_pack_elements: 1}\n",
            "4 gradients averaged with ring, 4 of them in 2 packs",
        ),
    ],
)
def test_summary_counts_gradients_not_packs(load_fixture, pack, summary):
    _, report = graphpass.rewrite_with_report(
        load_fixture("mlp_sgd").graph_def,
        devices=2,
        rules=rules("replicated", "ring", pack),
        device_type="CPU",
    )
    assert report.passes[-1].result.summary == summary


def test_sum_without_average_has_no_scale(load_fixture):
    pipeline = Pipeline.from_yaml(
        "passes:\n  - replicate\n  - allreduce: {algorithm: naive, average: false}\n"
    )
    out = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")
    assert not [
        n for n in out.node if "/allreduce_shared/" in n.name or n.name.startswith("allreduce_shared/")
    ]


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "  - allreduce\n  - replicate\n",
            "r.yaml:2: 'allreduce' needs a 'replicate' pass before it (for the towers)",
        ),
        (
            "  - replicate\n  - allreduce\n  - allreduce\n",
            "r.yaml:4: 'allreduce' may appear only once (also at r.yaml:3)",
        ),
    ],
)
def test_order_is_checked_when_the_rules_load(text, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        Pipeline.from_yaml("passes:\n" + text, "r.yaml")


def test_without_allreduce_the_gradients_are_left_unreduced(load_fixture):
    pipeline = Pipeline.from_yaml("passes:\n  - replicate\n")
    with pytest.raises(ConfigError, match="leave 4 gradients unreduced"):
        graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")
