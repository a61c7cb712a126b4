"""The all-reduce algorithm registry, and the helpers each algorithm's own test file
(tests/test_algorithm_<name>.py) uses: every algorithm with a CPU kernel trains like the single
tower, with and without gradient packing, in every mode it applies to, at K = 2, 4 and 8."""

from __future__ import annotations

import dataclasses
import re
from itertools import product
from pathlib import Path

import pytest

import graphpass
from graphpass import algorithms
from graphpass.errors import ConfigError
from graphpass.execution import compare
from graphpass.options import option
from graphpass.passes import REGISTRY
from graphpass.pipeline import Pipeline

MODELS = {"conv_momentum": False, "mlp_sgd": True, "mlp_adam": True}  # model -> slow
TOWERS = {2: False, 4: True, 8: True}  # K -> slow
PACKING = {
    "unpacked": "",
    "split": "  - pack-gradients: {num_split: 3, min_pack_elements: 1}\n",
    "bucket": "  - pack-gradients: {bucket_bytes: 600}\n",
}
PS_PLACE = [
    "",
    "  - place-variables: {strategy: least-loaded}\n",
    "  - place-variables: {strategy: balanced, small_bytes: 64}\n",
]


def rules(mode: str, algorithm: str, pack: str = "", place: str = "") -> Pipeline:
    return Pipeline.from_yaml(
        f"passes:\n  - replicate: {{mode: {mode}}}\n{place}{pack}  - allreduce: {{algorithm: {algorithm}}}\n"
    )


def check(fx, k, pipeline):
    """Rewrite `fx` for K CPU devices (verifying after each pass), run both a few steps, and
    require the variables to agree with the single tower's and the replicas with each other."""
    out = graphpass.rewrite(fx.graph_def, devices=k, rules=pipeline, device_type="CPU", verify_each=True)
    result = compare(fx.graph_def, out, k, fx.batches(2 * k, 3, seed=k), fx.train_op, fx.init_op)
    assert not result.missing and not result.initial_mismatch
    assert not result.replica_mismatch
    worst = result.worst()
    assert worst[1] <= 1e-5, f"{worst[0]} differs by {worst[1]:.2e}"
    return out


def training_cases(packings=("unpacked", "split")) -> list:
    """(model, k, packing) for an equivalence test: the small conv model at K = 2 in the fast
    tier, the rest marked slow."""
    return [
        pytest.param(m, k, p, marks=[pytest.mark.slow] if MODELS[m] or TOWERS[k] else [], id=f"{m}-k{k}-{p}")
        for m, k, p in product(MODELS, TOWERS, packings)
    ]


def trains_replicated(load_fixture, algorithm, model, k, pack):
    check(load_fixture(model), k, rules("replicated", algorithm, PACKING[pack]))


def trains_parameter_server(load_fixture, algorithm, model, k, pack):
    check(load_fixture(model), k, rules("parameter_server", algorithm, PACKING[pack], PS_PLACE[k % 3]))


def trains_bucketed(load_fixture, algorithm):
    check(
        load_fixture("conv_momentum"),
        4,
        rules("replicated", algorithm, "  - pack-gradients: {bucket_bytes: 2500}\n"),
    )


def refuses(load_fixture, mode, algorithm, k, match, device_type="CPU"):
    with pytest.raises(graphpass.PassFailedError, match=re.escape(match)):
        graphpass.rewrite(
            load_fixture("mlp_sgd").graph_def,
            devices=k,
            rules=rules(mode, algorithm),
            device_type=device_type,
        )


# --- the registry is the one list ---------------------------------------------------------------


def test_allreduce_accepts_exactly_the_registered_algorithms():
    (algorithm,) = [o for o in REGISTRY["allreduce"].options() if o.name == "algorithm"]
    assert algorithm.choices == algorithms.names()
    assert algorithms.names() == tuple(algorithms.REGISTRY)
    for name, cls in algorithms.REGISTRY.items():
        assert cls.name == name and cls.summary


def test_an_unknown_algorithm_is_refused_naming_the_registered_ones():
    with pytest.raises(ConfigError) as e:
        Pipeline.from_yaml("passes:\n  - replicate\n  - allreduce: {algorithm: butterfly}\n", "r.yaml")
    assert str(e.value).startswith("r.yaml:3: pass 'allreduce' option 'algorithm' is 'butterfly'")
    assert ", ".join(algorithms.names()) in str(e.value)
    with pytest.raises(ConfigError, match="unknown all-reduce algorithm 'butterfly'; algorithms: nccl"):
        algorithms.get("butterfly")


def test_every_algorithm_has_its_test_file():
    here = Path(__file__).parent
    for name in algorithms.names():
        path = here / f"test_algorithm_{name.replace('-', '_')}.py"
        assert path.exists(), f"algorithm {name} has no {path.name}"


def test_every_algorithm_has_a_golden_case():
    from .test_golden import update_golden

    covered = update_golden.preset_algorithms() | {
        c[0].removeprefix("allreduce-") for c in update_golden.CASES if c[0].startswith("allreduce-")
    }
    assert covered == set(algorithms.names())


def test_algorithm_options_are_frozen_typed_dataclasses():
    for name, cls in algorithms.REGISTRY.items():
        if cls.Options is None:
            assert algorithms.options(name) == []
            continue
        assert dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen
        opts = algorithms.options(name)
        assert [o.name for o in opts] == [f.name for f in dataclasses.fields(cls.Options)]
        assert all(o.help for o in opts), f"{name}: every option says what it does"
        assert cls().options == cls.Options(), "made without options, an algorithm has its defaults"


def test_a_new_algorithm_needs_only_its_registry_line(monkeypatch, load_fixture):
    """An algorithm registered with options of its own is accepted by rules files, listed with
    its options, and built with them, with nothing else edited."""

    @dataclasses.dataclass(frozen=True)
    class EchoOptions:
        copies: int = option(1, "identities per tower")

    class Echo(algorithms.Algorithm):
        name = "echo"
        summary = "every tower keeps its own gradient (not a reduction: for this test)"
        Options = EchoOptions

        def build(self, b):
            out = []
            for i, t in enumerate(b.red.inputs):
                for _ in range(self.options.copies):
                    t = b.identity(i, t, b.device(i))
                out.append(t)
            return out

    monkeypatch.setitem(algorithms.REGISTRY, "echo", Echo)
    names = {o.name: o for o in REGISTRY["allreduce"].options()}
    assert "echo" in names["algorithm"].choices
    assert names["copies"].help == "echo only: identities per tower"
    pipeline = Pipeline.from_yaml("passes:\n  - replicate\n  - allreduce: {algorithm: echo, copies: 3}\n")
    assert pipeline.passes[1].algorithm_options == EchoOptions(3)
    out = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2, rules=pipeline, device_type="CPU")
    copies = [n for n in out.node if n.name.startswith("tower0/allreduce/hidden/kernel/copy")]
    assert len(copies) == 3
    with pytest.raises(ConfigError, match="copies applies to algorithm: echo only, not naive"):
        Pipeline.from_yaml("passes:\n  - replicate\n  - allreduce: {algorithm: naive, copies: 2}\n")
