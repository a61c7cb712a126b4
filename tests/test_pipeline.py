"""Rules files: presets load, and every mistake is named with file, line and what is valid."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from graphpass.errors import ConfigError
from graphpass.passes import REGISTRY, Pass
from graphpass.passes.allreduce import AllReduce
from graphpass.passes.pack_gradients import PackGradients
from graphpass.pipeline import Pipeline, check_order, preset_names


def test_presets_load():
    for name in preset_names():
        p = Pipeline.load(name)
        assert p.passes[0].name == "replicate"


def test_file_and_bare_pass_names(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("passes:\n  - replicate\n  - allreduce: {algorithm: naive, average: false}\n")
    p = Pipeline.load(str(f))
    assert [x.name for x in p.passes] == ["replicate", "allreduce"]
    assert p.passes[1].algorithm == "naive" and p.passes[1].average is False


@pytest.mark.parametrize(
    "text,match",
    [
        ("passes: [replicate, allreduce", "r.yaml:1: malformed YAML"),
        (
            "passes:\n  - replicate\n  - shuffle\n",
            "r.yaml:3: unknown pass 'shuffle'; valid passes: allreduce, pack-gradients, place-variables, replicate",
        ),
        (
            "passes:\n  - replicate\n  - allreduce: {algo: nccl}\n",
            "r.yaml:3: pass 'allreduce' has no option 'algo'; valid options: algorithm",
        ),
        (
            "passes:\n  - replicate:\n      mode: mirrored\n",
            "r.yaml:3: pass 'replicate' option 'mode' is 'mirrored'; expected one of replicated, parameter_server",
        ),
        (
            "passes:\n  - replicate\n  - allreduce:\n      average: 'yes'\n",
            "r.yaml:4: pass 'allreduce' option 'average' is 'yes'; expected bool",
        ),
        ("pases: []\n", "r.yaml:1: unknown key 'pases'"),
        ("", "the rules file is empty"),
        (
            "passes:\n  - allreduce\n  - replicate\n",
            "r.yaml:2: 'allreduce' needs a 'replicate' pass before it",
        ),
        ("passes:\n  - replicate\n  - replicate\n", "r.yaml:3: 'replicate' may appear only once"),
        ("- replicate\n", "must be a mapping"),
    ],
)
def test_errors_name_file_line_and_choices(tmp_path, text, match):
    f = tmp_path / "r.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        Pipeline.load(str(f))
    assert match in str(e.value)


def test_unsafe_yaml_tags_are_refused(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("passes:\n  - replicate:\n      mode: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        Pipeline.load(str(f))


def test_unknown_preset_lists_presets():
    with pytest.raises(
        ConfigError, match="unknown rules 'x'; presets: ps-balanced, ps-least-loaded, ps-naive"
    ):
        Pipeline.load("x")


# --- pass order, from what each pass requires and provides ------------------------------------


def test_every_requirement_has_a_provider_and_every_fact_one():
    providers: dict[str, list[str]] = {}
    for name, cls in REGISTRY.items():
        for fact in cls.provides:
            providers.setdefault(fact, []).append(name)
    assert all(len(v) == 1 for v in providers.values()), providers
    for name, cls in REGISTRY.items():
        for fact in cls.requires + cls.before:
            assert fact in providers, f"{name} names {fact}, which no pass provides"


def test_passes_built_in_python_are_checked_too():
    replicate = REGISTRY["replicate"]()
    Pipeline([replicate, PackGradients(), AllReduce()])
    with pytest.raises(ConfigError, match=r"^<rules>: a pipeline starts with the 'replicate' pass$"):
        Pipeline([])
    with pytest.raises(ConfigError, match=r"^x.yaml: pass 3: put 'pack-gradients' before 'allreduce' "):
        Pipeline([replicate, AllReduce(), PackGradients()], "x.yaml")


@dataclass(frozen=True)
class _Tally(Pass):
    name = "tally"
    requires = ("variable-placement",)


@dataclass(frozen=True)
class _Placer(Pass):
    name = "placer"
    requires = ("towers",)
    provides = ("variable-placement",)


def test_the_check_reads_only_the_declarations():
    replicate = REGISTRY["replicate"]()
    where = ["f:1", "f:2", "f:3"]
    with pytest.raises(ConfigError, match=r"^f:2: 'tally' needs a 'place-variables' pass before it"):
        check_order([replicate, _Tally(), REGISTRY["place-variables"]()], where)
    check_order([replicate, REGISTRY["place-variables"](), _Tally()], where)
    with pytest.raises(
        ConfigError, match=r"f:3: 'placer' provides the variable-placement, which 'place-variables'"
    ):
        check_order([replicate, REGISTRY["place-variables"](), _Placer()], where)
