"""The README's code that runs on this machine does run: its 'Running the rewritten graph' block."""

from __future__ import annotations

import os
import re

from .conftest import ROOT


def test_running_the_rewritten_graph_block(capsys):
    text = (ROOT / "README.md").read_text()
    section = text.split("### Running the rewritten graph", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert re.search(r"loss after 3 steps: \d+\.\d{3}", capsys.readouterr().out)
