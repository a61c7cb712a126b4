"""Odd arguments to rewrite(): graph paths and objects, rules names and objects, each with a label."""

from __future__ import annotations

from pathlib import Path

from .files import _file_bytes
from .harness import fixture_bytes, fixture_graph


def _graph_arguments(tmp: Path) -> list[tuple[str, object]]:
    from tensorflow.core.framework import graph_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    saved = tmp / "saved_model_dir"
    saved.mkdir(exist_ok=True)
    (saved / "saved_model.pb").write_bytes(b"")
    yaml_as_pb = tmp / "rules.pb"
    yaml_as_pb.write_text("passes: [replicate]\n")
    text_as_pb = tmp / "graph_text.pb"
    text_as_pb.write_bytes(_file_bytes("mlp_sgd", "text"))
    good = tmp / "mlp_sgd.pb"
    good.write_bytes(fixture_bytes("mlp_sgd"))
    return [
        ("''", ""),
        ("'.'", "."),
        ("'/'", "/"),
        ("a missing .pb", str(tmp / "missing.pb")),
        ("a directory", str(tmp)),
        ("a SavedModel directory", str(saved)),
        ("a 5000-character name", "a" * 5000 + ".pb"),
        ("a 300-character file name in a real directory", str(tmp / ("b" * 300 + ".pb"))),
        ("a name with a NUL byte", str(tmp / "x\x00y.pb")),
        ("/dev/null", "/dev/null"),
        ("a YAML file named .pb", str(yaml_as_pb)),
        ("a text GraphDef named .pb", str(text_as_pb)),
        ("a Path to a good .pb", good),
        ("bytes of a good .pb", fixture_bytes("mlp_sgd")),
        ("None", None),
        ("42", 42),
        ("an empty GraphDef", graph_pb2.GraphDef()),
        ("a MetaGraphDef", meta_graph_pb2.MetaGraphDef()),
        ("a list of nodes", list(fixture_graph("mlp_sgd").node)),
    ]


def _rules_arguments(tmp: Path) -> list[tuple[str, object]]:

    return [
        ("''", ""),
        ("a 5000-character name", "r" * 5000),
        ("a 5000-character .yaml name", "r" * 5000 + ".yaml"),
        ("a name with a NUL byte", "replicated\x00nccl"),
        ("a directory", str(tmp)),
        ("a Path to a directory", tmp),
        ("a directory named .yaml", str(_mkdir(tmp / "dir.yaml"))),
        ("/dev/null", "/dev/null"),
        ("a preset", "replicated-collective"),
        ("a Path preset name", Path("replicated-naive")),
        ("None", None),
        ("a list", ["replicate", "allreduce"]),
    ]


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path
