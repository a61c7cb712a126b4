"""Golden rewrites: each shipped preset on the small MLP, compared with a reviewed .pbtxt.

Regenerate on purpose with `python tools/update_golden.py` and review the diff.
"""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import ROOT

_spec = importlib.util.spec_from_file_location("update_golden", ROOT / "tools" / "update_golden.py")
update_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update_golden)


def test_every_preset_has_a_golden_case():
    from graphpass.pipeline import preset_names

    assert sorted(update_golden.PRESETS) == preset_names()


@pytest.mark.parametrize("case", update_golden.CASES, ids=lambda c: f"{c[0]}-{c[1]}-k{c[2]}")
def test_rewrite_matches_golden(case):
    path = update_golden.golden_path(*case)
    assert path.exists(), f"missing {path}: run tools/update_golden.py"
    want = path.read_text()
    got = update_golden.render(*case)
    if got != want:
        from graphpass.diff import diff_pbtxt

        report = diff_pbtxt(want, got, path.name, "rewrite").render(max_lines=80)
        pytest.fail(f"rewrite differs from {path.name} (tools/update_golden.py regenerates it):\n{report}")
