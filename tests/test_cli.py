"""The command line: the main job, and one clear line + exit 2 + no output file for bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import FIXTURES, ROOT


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "graphpass", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_rewrite_writes_output_and_prints_a_summary(tmp_path):
    out = tmp_path / "mlp8.pb"
    r = run_cli("rewrite", str(FIXTURES / "mlp_sgd.pb"), "-o", str(out), "--devices", "8")
    assert r.returncode == 0, r.stderr
    assert out.exists() and out.stat().st_size > 0
    assert "8 on /device:GPU:0..7" in r.stdout and "nodes" in r.stdout
    assert r.stderr == ""


@pytest.mark.slow
def test_default_output_name_and_text_format(tmp_path):
    src = tmp_path / "model.pbtxt"
    from google.protobuf import text_format

    from graphpass import load_graph

    src.write_text(text_format.MessageToString(load_graph(FIXTURES / "mlp_sgd.pb")))
    r = run_cli(
        "rewrite",
        str(src),
        "--devices",
        "2",
        "--device-type",
        "cpu",
        "--rules",
        "replicated-collective",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert (tmp_path / "model.rewritten.pbtxt").read_text().startswith("node {")


def _bad(tmp_path, *args, match):
    out = tmp_path / "out.pb"
    r = run_cli(*args, "-o", str(out))
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert match in lines[0], lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out.pb.*")), "no temporary file may be left behind"
    return lines[0]


def test_not_a_graphdef(tmp_path):
    junk = tmp_path / "junk.pb"
    junk.write_bytes(os.urandom(4096))
    _bad(tmp_path, "rewrite", str(junk), "--devices", "2", match="is not a binary GraphDef")


@pytest.mark.slow
def test_inference_graph(tmp_path):
    _bad(
        tmp_path,
        "rewrite",
        str(FIXTURES / "inference_mlp.pb"),
        "--devices",
        "2",
        match="no optimizer updates",
    )


@pytest.mark.slow
def test_nccl_onto_cpu_devices(tmp_path):
    line = _bad(
        tmp_path,
        "rewrite",
        str(FIXTURES / "mlp_sgd.pb"),
        "--devices",
        "2",
        "--device-type",
        "CPU",
        match="nccl all-reduce runs on GPUs only",
    )
    assert "replicated-collective" in line


@pytest.mark.slow
def test_unknown_rules(tmp_path):
    line = _bad(
        tmp_path,
        "rewrite",
        str(FIXTURES / "mlp_sgd.pb"),
        "--devices",
        "2",
        "--rules",
        "fastest",
        match="unknown rules 'fastest'",
    )
    assert "replicated-nccl" in line


@pytest.mark.slow
def test_missing_input(tmp_path):
    _bad(tmp_path, "rewrite", str(tmp_path / "nope.pb"), "--devices", "2", match="no such file")


def test_missing_devices_flag_is_a_usage_error(tmp_path):
    r = run_cli("rewrite", str(FIXTURES / "mlp_sgd.pb"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--devices" in r.stderr


@pytest.mark.slow
def test_rules_command_lists_presets_and_passes():
    r = run_cli("rules")
    assert r.returncode == 0
    for name in (
        "replicated-nccl",
        "replicated-collective",
        "replicated-naive",
        "ps-naive",
        "replicate",
        "allreduce",
        "algorithm",
    ):
        assert name in r.stdout


def test_version_prints_the_package_version_without_loading_tensorflow():
    import time

    import graphpass

    start = time.monotonic()
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"graphpass {graphpass.__version__}" and r.stderr == ""
    assert time.monotonic() - start < 3.0


def test_rules_name_prints_the_presets_yaml(capsys):
    from graphpass import cli
    from graphpass.pipeline import Pipeline, presets_dir

    assert cli.main(["rules", "ps-balanced"]) == 0
    out = capsys.readouterr().out
    assert out == (presets_dir() / "ps-balanced.yaml").read_text()
    assert [p.name for p in Pipeline.from_yaml(out).passes][0] == "replicate"


def test_rules_unknown_name_is_one_line_and_exit_2(capsys):
    from graphpass import cli

    assert cli.main(["rules", "fastest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'fastest'; presets: " in err[0] and "replicated-nccl" in err[0]
