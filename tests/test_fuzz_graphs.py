"""Fuzz: structurally mutated training graphs (tests/fuzzing/graphs.py) through the oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.graphs import mutate, mutation_st, towers_st
from .fuzzing.harness import ALL_FIXTURES, PRESETS, Outcomes, _settings, worker_fixture  # noqa: F401


@pytest.mark.slow
def test_fuzz_graph_mutations(capsys, worker):
    """Structurally mutated training graphs: rewrite succeeds with a verifiable graph or raises
    GraphpassError."""
    outcomes = Outcomes("graph-mutations")

    @_settings(400)
    @given(
        fixture=st.sampled_from(ALL_FIXTURES),
        mutations=st.lists(mutation_st, min_size=1, max_size=3),
        towers=towers_st,
        rules=st.sampled_from(PRESETS),
        device_type=st.sampled_from(["CPU", "GPU"]),
        verify_each=st.booleans(),
    )
    def run(fixture, mutations, towers, rules, device_type, verify_each):
        outcomes.cases += 1
        _, done = mutate(fixture, mutations)
        reproducer = (
            f"{fixture} with [{'; '.join(done)}], rules={rules}, devices={towers}, {device_type}"
            f"{', verify_each' if verify_each else ''} -- replay({fixture!r}, {mutations!r}, devices={towers}, "
            f"rules={rules!r}, device_type={device_type!r}, verify_each={verify_each})"
        )
        task = ("graph", fixture, mutations, towers, rules, device_type, verify_each)
        worker.run(outcomes, reproducer, task)

    run()
    outcomes.finish(capsys)
