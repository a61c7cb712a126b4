"""The fuzz suite's shared parts (the tests are tests/test_fuzz_*.py, one file per domain).

- harness: the oracle every case goes through (`check_rewrite`, `expect`), the tally of outcomes
  with its report line `fuzz[<domain>]: N cases in S s (...)`, the worker process, fixture graphs
  and the registries the cases draw names from (presets, passes, algorithms);
- graphs: GraphDef mutations; files: corrupt graph files; rules: rules documents (data and text);
  devices: device specifications; api_args: odd arguments to rewrite(); repros: the table of
  regression cases, each a bug these tests found.
"""
