"""Fuzz: device specifications (tests/fuzzing/devices.py) through parse_devices, then a rewrite."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.devices import DEVICE_TYPES, PS_DEVICES, _count_of, device_spec_st
from .fuzzing.harness import MAX_TOWERS, PRESETS, TRAINING, Outcomes, _settings, check_rewrite, fixture_graph


@pytest.mark.slow
def test_fuzz_device_specs(capsys):
    """parse_devices returns one canonical device per requested tower (huge counts included), or
    raises ConfigError; a spec of at most MAX_TOWERS devices then drives a rewrite (with workers
    and parameter-server devices too)."""
    from graphpass import devices as devmod
    from graphpass.errors import ConfigError, GraphpassError

    outcomes = Outcomes("device-specs")

    @_settings(500)
    @given(
        spec=device_spec_st,
        device_type=st.sampled_from(["GPU", "CPU", "cpu"])
        | st.sampled_from(DEVICE_TYPES)
        | st.text(max_size=5),
        workers=st.sampled_from([None, None, None, 1, 2, 3, 0, -1, True]),
        ps_devices=st.sampled_from(PS_DEVICES),
        fixture=st.sampled_from(TRAINING),
        rules=st.sampled_from(PRESETS),
    )
    def run(spec, device_type, workers, ps_devices, fixture, rules):
        outcomes.cases += 1
        shown = f"<{spec} as int>" if isinstance(spec, int) and abs(spec) > 10**4 else repr(spec)
        reproducer = f"parse_devices({shown}, {device_type!r}, workers={workers!r})"
        count = _count_of(spec)
        if count is not None and count * (workers if isinstance(workers, int) and workers > 1 else 1) > 10**6:
            outcomes.ok("skipped: would allocate over 10**6 names")
            return
        try:
            parsed = devmod.parse_devices(spec, device_type, workers)
        except ConfigError as e:
            outcomes.error(e, reproducer)
            return
        except GraphpassError as e:
            outcomes.fail(
                "crash", e, reproducer, f"parse_devices raised {type(e).__name__}, not ConfigError: {e}"
            )
            return
        except Exception as e:  # noqa: BLE001
            outcomes.fail("crash", e, reproducer)
            return
        outcomes.ok("parsed")
        expected = None if count is None else count * (workers or 1)
        if expected is not None and len(parsed) != expected:
            outcomes.fail(
                "wrong-result", None, reproducer, f"{len(parsed)} devices for a count of {expected}"
            )
        if len(set(parsed)) != len(parsed):
            outcomes.fail("wrong-result", None, reproducer, f"repeated devices: {parsed}")
        if len(parsed) > MAX_TOWERS:
            return
        check_rewrite(
            outcomes,
            f"rewrite({fixture!r} fixture, devices={spec!r}, rules={rules!r}, device_type={device_type!r}, "
            f"workers={workers!r}, ps_devices={ps_devices!r})",
            fixture_graph(fixture),
            spec,
            rules,
            device_type,
            workers=workers,
            ps_devices=ps_devices,
        )

    run()
    outcomes.finish(capsys)
