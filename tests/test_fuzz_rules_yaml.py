"""Fuzz: rules documents (tests/fuzzing/rules.py) through Pipeline.from_yaml, then a rewrite."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.harness import TRAINING, Outcomes, _settings, check_rewrite, fixture_graph
from .fuzzing.rules import structured_rules, text_rules


@pytest.mark.slow
def test_fuzz_rules_yaml(capsys):
    """Mutated rules: Pipeline.from_yaml returns a Pipeline or raises ConfigError; a Pipeline that
    loads then rewrites a training graph (GraphpassError or verifiable output)."""
    from graphpass.errors import ConfigError, GraphpassError
    from graphpass.pipeline import Pipeline

    outcomes = Outcomes("rules-yaml")

    @_settings(400)
    @given(
        text=st.one_of(structured_rules(), text_rules()),
        fixture=st.sampled_from(TRAINING),
        towers=st.sampled_from([1, 2, 3, 4]),
        device_type=st.sampled_from(["CPU", "CPU", "GPU"]),
    )
    def run(text, fixture, towers, device_type):
        outcomes.cases += 1
        reproducer = f"Pipeline.from_yaml({text!r})"
        try:
            pipeline = Pipeline.from_yaml(text, "r.yaml")
        except ConfigError as e:
            outcomes.error(e, reproducer)
            return
        except GraphpassError as e:
            outcomes.fail(
                "crash", e, reproducer, f"from_yaml raised {type(e).__name__}, not ConfigError: {e}"
            )
            return
        except Exception as e:  # noqa: BLE001
            outcomes.fail("crash", e, reproducer)
            return
        outcomes.ok("parsed")
        check_rewrite(
            outcomes,
            f"replay({fixture!r}, [], devices={towers}, rules={text!r}, device_type={device_type!r})",
            fixture_graph(fixture),
            towers,
            pipeline,
            device_type,
        )

    run()
    outcomes.finish(capsys)
