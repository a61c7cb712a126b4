"""Fuzz: truncated and bit-flipped graph files (tests/fuzzing/files.py) through load_graph and the oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .fuzzing.files import _file_bytes, byte_edit_st, corrupt
from .fuzzing.harness import ALL_FIXTURES, Outcomes, _settings, worker_fixture  # noqa: F401


@pytest.mark.slow
def test_fuzz_corrupt_files(capsys, tmp_path, worker):
    """Truncated / bit-flipped .pb, .pbtxt and .meta files: load_graph raises InvalidGraphError or
    returns a GraphDef; a GraphDef that loads is then rewritten (GraphpassError or verifiable)."""
    outcomes = Outcomes("corrupt-files")
    suffixes = {"binary": [".pb", ".graphdef", ""], "text": [".pbtxt", ".txt"], "meta": [".meta"]}

    @_settings(300)
    @given(
        fixture=st.sampled_from(ALL_FIXTURES),
        fmt=st.sampled_from(["binary", "binary", "text", "meta"]),
        suffix_pick=st.integers(0, 10),
        cross=st.integers(0, 9),
        edits=st.lists(byte_edit_st, min_size=1, max_size=4),
        towers=st.sampled_from([1, 2, 3]),
    )
    def run(fixture, fmt, suffix_pick, cross, edits, towers):
        outcomes.cases += 1
        data, done = corrupt(_file_bytes(fixture, fmt), edits)
        if cross == 0:  # a file whose suffix does not match its content
            fmt_suffix = {"binary": "text", "text": "binary", "meta": "binary"}[fmt]
        else:
            fmt_suffix = fmt
        options = suffixes[fmt_suffix]
        path = tmp_path / f"case{outcomes.cases}{options[suffix_pick % len(options)]}"
        path.write_bytes(data)
        reproducer = (
            f"load_graph('{path.suffix or '(no suffix)'}' file) of {fixture} as {fmt} with "
            f"[{'; '.join(done)}] -- corrupt(_file_bytes({fixture!r}, {fmt!r}), {edits!r})"
        )
        try:
            worker.run(outcomes, reproducer, ("file", str(path), towers))
        finally:
            path.unlink()

    run()
    outcomes.finish(capsys)
