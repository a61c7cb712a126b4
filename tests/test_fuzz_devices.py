"""Fuzz: device specifications (tests/fuzzing/devices.py) through parse_devices, then a rewrite; the
spellings of one device (issue 21)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.devices import (
    DEVICE_TYPES,
    DEVICES,
    PS_DEVICES,
    _count_of,
    canonical_name,
    device_spec_st,
    spelled,
)
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


def test_fuzz_device_spellings():
    """Spellings of one device are one device: a list of distinct devices, each in any of its
    spellings (as a list or one comma-separated string), parses to their canonical names in
    order; the same list with one device named again, in any spelling and place, is refused
    with a ConfigError naming the device and, where they differ, both spellings."""
    from graphpass import devices as devmod
    from graphpass.errors import ConfigError

    @_settings(300)
    @given(data=st.data(), picked=st.lists(DEVICES, min_size=1, max_size=5, unique=True))
    def run(data, picked):
        spellings = [data.draw(spelled(d)) for d in picked]
        names = [canonical_name(d) for d in picked]
        assert devmod.parse_devices(spellings) == names, spellings
        assert devmod.parse_devices(",".join(spellings)) == names, spellings
        i = data.draw(st.integers(0, len(picked) - 1))
        again = data.draw(spelled(picked[i]))
        at = data.draw(st.integers(0, len(spellings)))
        listed = [*spellings[:at], again, *spellings[at:]]
        first, second = (spellings[i], again) if i < at else (again, spellings[i])
        with pytest.raises(ConfigError) as refused:
            devmod.parse_devices(listed)
        message = str(refused.value)
        assert f"device {names[i]} is listed twice" in message, (listed, message)
        if first.strip() != second.strip():
            assert f"(as '{first.strip()}' and '{second.strip()}')" in message, (listed, message)

    run()


@pytest.mark.slow
def test_fuzz_spelled_device_lists_rewrite_alike():
    """A rewrite onto devices in any spellings is the rewrite onto their canonical names, byte
    for byte (or both are refused alike), pins in the input included (mlp_cpu_pinned)."""
    import graphpass

    @_settings(8)
    @given(
        data=st.data(),
        picked=st.lists(DEVICES, min_size=2, max_size=3, unique=True),
        fixture=st.sampled_from(["mlp_sgd", "mlp_cpu_pinned"]),
        rules=st.sampled_from(["replicated-collective", "ps-least-loaded"]),
    )
    def run(data, picked, fixture, rules):
        spellings = [data.draw(spelled(d)) for d in picked]
        graph = fixture_graph(fixture)

        def outcome(devices):
            try:
                return graphpass.rewrite_to_bytes(graph, devices=devices, rules=rules)[0]
            except graphpass.GraphpassError as e:
                return f"{type(e).__name__}: {e}"

        assert outcome(spellings) == outcome([canonical_name(d) for d in picked]), (spellings, fixture, rules)

    run()
