"""Fuzz: Pipeline.load of odd preset names and of rules files with odd bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.harness import Outcomes, _settings
from .fuzzing.rules import text_rules


@pytest.mark.slow
def test_fuzz_rules_files(capsys, tmp_path):
    """Pipeline.load of odd preset names and of files with odd bytes raises ConfigError or loads."""
    from graphpass.errors import ConfigError
    from graphpass.pipeline import Pipeline

    outcomes = Outcomes("rules-files")
    names_st = st.sampled_from(
        ["", ".", "..", "/", "replicated", "REPLICATED-NCCL", "replicated-nccl ", "ps-naive.yaml", "../rules/ps-naive",
         "rules/ps-naive.yaml", "no/such/file.yaml", "x\x00y", "\x00", "~", "名前", "a" * 5000, "/dev/null", "/proc"]
    )  # fmt: skip

    @_settings(60)
    @given(
        name=names_st,
        content=st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"\xff\xfe\x00p",
                    b"passes: [replicate]\n\xff",
                    "passes: [replicate, allreduce]\n".encode("utf-16"),
                ]
            ),
            text_rules().map(lambda t: t.encode("utf-8", "surrogatepass")),
        ),
        suffix=st.sampled_from([".yaml", ".yml", ".txt", ""]),
        as_file=st.booleans(),
    )
    def run(name, content, suffix, as_file):
        outcomes.cases += 1
        if as_file:
            path = tmp_path / f"rules{outcomes.cases}{suffix}"
            path.write_bytes(content)
            target, reproducer = str(path), f"Pipeline.load(<file{suffix} with {content!r}>)"
        else:
            target, reproducer = name, f"Pipeline.load({name!r})"
        try:
            Pipeline.load(target)
        except ConfigError as e:
            outcomes.error(e, reproducer)
        except Exception as e:  # noqa: BLE001
            outcomes.fail("crash", e, reproducer)
        else:
            outcomes.ok("loaded")

    run()
    outcomes.finish(capsys)
