"""Regression tests for the bugs the fuzz tests found outside graphs: device specifications, rules
YAML, paths, one-line messages and argument types (each call must end well: a result or a
GraphpassError with a one-line message, never an InternalError)."""

from __future__ import annotations

import pytest

from .fuzzing.harness import fixture_graph
from .fuzzing.repros import _call_ends_well, _node
from .fuzzing.rules import _deep


@pytest.mark.parametrize("spec", ["²", "①"])
def test_regression_devices_unicode_digit(spec):
    from graphpass.devices import parse_devices

    _call_ends_well(parse_devices, spec)


@pytest.mark.parametrize(
    "value", ["!!timestamp 2001-12-1b", "!!int abc", "[!!float x]", "!!timestamp 2001-13-45"]
)
def test_regression_yaml_value_unfit_for_its_tag(value):
    """Found by exploration: PyYAML's tag constructors raised AttributeError or ValueError."""
    from graphpass.errors import ConfigError
    from graphpass.pipeline import Pipeline

    with pytest.raises(ConfigError, match=r"<rules>:3: a value does not fit its explicit YAML tag"):
        Pipeline.from_yaml(f"passes:\n  - replicate\n  - allreduce: {{average: {value}}}\n")
    _call_ends_well(Pipeline.from_yaml, f"passes:\n  - replicate\n  - allreduce: {{average: {value}}}\n")


def test_regression_yaml_deep_nesting():
    from graphpass.pipeline import Pipeline

    _call_ends_well(Pipeline.from_yaml, _deep(1000, 0))


@pytest.mark.parametrize("what", ["rules", "graph"])
def test_regression_path_too_long(what, tmp_path):
    from graphpass import io
    from graphpass.pipeline import Pipeline

    if what == "rules":
        _call_ends_well(Pipeline.load, "r" * 300)
    else:
        _call_ends_well(io.load_graph, tmp_path / ("g" * 300 + ".pb"))


def test_regression_path_nul_byte(tmp_path):
    from graphpass import io

    _call_ends_well(io.load_graph, str(tmp_path / "x\x00y.pb"))


@pytest.mark.parametrize(
    "case",
    ["pass name", "option name", "top-level key", "device type", "device name", "op type"],
)
def test_regression_message_newline(case):
    from graphpass import api
    from graphpass.devices import parse_devices
    from graphpass.pipeline import Pipeline

    if case == "pass name":
        _call_ends_well(Pipeline.from_yaml, 'passes:\n  - replicate\n  - "allreduce\\nx"\n')
    elif case == "option name":
        _call_ends_well(Pipeline.from_yaml, 'passes:\n  - replicate:\n      "opt\\nion": 1\n')
    elif case == "top-level key":
        _call_ends_well(Pipeline.from_yaml, '"key\\nwith newline": 1\npasses: [replicate]\n')
    elif case == "device type":
        _call_ends_well(parse_devices, 2, "G\nPU")
    elif case == "device name":
        _call_ends_well(parse_devices, ["/gpu:0\n/gpu:1x"])
    else:
        gd = fixture_graph("mlp_sgd")
        _node(gd, "hidden/MatMul").op = "Mat\nMul"
        _call_ends_well(api.rewrite, gd, devices=2, rules="replicated-collective", device_type="CPU")


@pytest.mark.parametrize("devices,device_type", [(2.0, "CPU"), (None, "CPU"), (2, None)])
def test_regression_api_argument_types(devices, device_type):
    from graphpass import api

    gd = fixture_graph("mlp_sgd")
    _call_ends_well(api.rewrite, gd, devices=devices, rules="replicated-collective", device_type=device_type)


def test_regression_empty_pipeline():
    from graphpass.errors import ConfigError
    from graphpass.pipeline import Pipeline

    with pytest.raises(ConfigError, match="a pipeline starts with the 'replicate' pass"):
        Pipeline([])
