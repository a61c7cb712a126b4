"""The linter as a test, so CI enforces it: style, imports, and the sealed IR (ruff's SLF001: only
graphpass/ir/ touches private attributes of Graph and Rewriter)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("ruff")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check_is_clean():
    got = _ruff("check", "--no-cache", "graphpass", "tools", "tests")
    assert got.returncode == 0, got.stdout + got.stderr


def test_only_the_ir_touches_graph_internals():
    got = _ruff(
        "check", "--no-cache", "--select", "SLF001", "--output-format", "concise", "graphpass", "tools"
    )
    assert got.returncode == 0, got.stdout
    # and the rule is really on: a private access outside ir/ is reported
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "SLF001",
            "--stdin-filename",
            "graphpass/probe.py",
            "-",
        ],
        cwd=ROOT,
        input="def f(graph):\n    return graph._nodes\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 1 and "SLF001" in probe.stdout, probe.stdout + probe.stderr
