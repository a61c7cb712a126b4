"""Fuzz: rewrite() with odd graph and rules arguments (tests/fuzzing/api_args.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.api_args import _graph_arguments, _rules_arguments
from .fuzzing.harness import Outcomes, _settings, check_rewrite


@pytest.mark.slow
def test_fuzz_api_arguments(capsys, tmp_path):
    """rewrite() with odd graph and rules arguments (paths, objects): GraphpassError or a
    verifiable GraphDef. Arguments outside the documented types (None, 42, lists) count too: a
    public API should refuse them with its own error."""
    outcomes = Outcomes("api-arguments")
    graphs = _graph_arguments(tmp_path)
    rules = _rules_arguments(tmp_path)

    @_settings(120)
    @given(
        g=st.integers(0, len(graphs) - 1),
        r=st.integers(0, len(rules) - 1),
        towers=st.sampled_from([1, 2, "2", [], ["/cpu:0", "/cpu:1"], None, 2.0]),
        device_type=st.sampled_from(["CPU", "GPU", "cpu", None]),
    )
    def run(g, r, towers, device_type):
        outcomes.cases += 1
        (g_label, graph), (r_label, rule) = graphs[g], rules[r]
        reproducer = (
            f"rewrite(<{g_label}>, devices={towers!r}, rules=<{r_label}>, device_type={device_type!r})"
        )
        check_rewrite(outcomes, reproducer, graph, towers, rule, device_type)

    run()
    outcomes.finish(capsys)
