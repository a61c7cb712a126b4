"""Regression tests for the graph bugs the fuzz tests found, one per entry of the repro table
(tests/fuzzing/repros.py), each run through the whole oracle. A bug still open is a strict xfail
with a KNOWN_BUGS entry (tests/fuzzing/harness.py): once fixed, its test XPASSes and fails the suite
until both are removed."""

from __future__ import annotations

import pytest

from .fuzzing.graphs import mutate
from .fuzzing.harness import ISOLATE, worker_fixture  # noqa: F401
from .fuzzing.repros import REPROS, _call_ends_well, _regression


@pytest.mark.parametrize("name", ["dangling-input", "dangling-input-colon-name"])
def test_regression_dangling_input(name):
    _regression(name)


def test_regression_colocation_not_utf8():
    _regression("colocation-not-utf8")


def test_regression_colocation_missing_target():
    _regression("colocation-missing-target")


def test_regression_node_device_unparsable():
    _regression("node-device-unparsable")


def test_regression_output_index_segfault(worker):
    if not ISOLATE:
        pytest.skip("would crash the test process without GRAPHPASS_FUZZ_ISOLATE")
    _regression("output-index-segfault", worker)


def test_regression_default_attr_inserted():
    _regression("default-attr-inserted")


def test_regression_gradient_scope_misread():
    _regression("gradient-scope-misread")


def test_regression_nccl_shared_name():
    _regression("nccl-shared-name")


def test_regression_one_tower_concat():
    _regression("one-tower-concat")


def test_regression_variable_dtype_not_a_type():
    _regression("variable-dtype-not-a-type")


def test_regression_scalar_taken_for_sparse_indices():
    _regression("scalar-taken-for-sparse-indices")


def test_regression_scalar_sparse_part_under_grad_scope():
    _regression("scalar-sparse-part-under-grad-scope")


def test_regression_variable_under_grad_named_scope():
    _regression("variable-under-grad-named-scope")


def test_regression_assign_update_misread_gradient():
    _regression("assign-update-misread-gradient")


def test_regression_colocated_with_tower0_only():
    _regression("colocated-with-tower0-only")


def test_regression_slots_in_a_circle(worker):
    _regression("slots-in-a-circle", worker)  # hung in placement


def test_regression_input_collective_inconsistent():
    _regression("input-collective-inconsistent")


def test_regression_kept_node_colocated_with_dropped_one():
    """Found by exploration: a kept original colocated with a dropped region node (InternalError)."""
    from graphpass import api

    graph, _ = mutate(
        "embedding_adagrad",
        [
            ("duplicate_node", 3410, 73, 553),
            ("duplicate_node", 3410, 73, 553),
            ("duplicate_node", 649, 121, 583),
        ],
    )
    _call_ends_well(api.rewrite, graph, devices=2, rules="ps-naive", device_type="GPU", verify_each=True)


def test_regression_mirror_reads_tower_value():
    """Found by exploration: a write of a replicated variable outside the training step that reads
    a value the towers compute (a copy of sparse Adam's slot decay, m = m * beta1) had per-tower
    mirrors reading the dropped original (InternalError). They read what the original reads, tower
    0's copy; run after a step, every replica still equals its canonical variable."""
    import numpy as np

    from graphpass import api
    from graphpass.execution import Runner

    _regression("mirror-reads-tower-value")
    graph, _ = mutate("embedding_adam", [("duplicate_node", 720, 207, 45)] * 3)
    out = api.rewrite(graph, devices=2, rules="replicated-collective", device_type="CPU")
    rng = np.random.default_rng(0)
    feeds = {"ids": rng.integers(0, 12, (4, 3)).astype(np.int32), "y": rng.integers(0, 4, 4)}
    slot = "embedding/Adam"
    with Runner(out, num_cpus=2, timeout_s=60) as r:
        r.run("init")
        r.run("train", feeds)
        before = r.variables([slot])[slot]
        r.run("train/update_embedding/Assign_dup")
        after = r.variables([slot, f"tower1/{slot}"])
    assert np.any(before != 0) and np.allclose(after[slot], before * 0.9)
    assert np.array_equal(after[slot], after[f"tower1/{slot}"])


def test_every_repro_is_pinned():
    """Each entry of the repro table has its regression test here."""
    from pathlib import Path

    source = Path(__file__).read_text()
    assert [name for name in REPROS if f'"{name}"' not in source] == []


def test_regression_const_value_not_its_dtype(worker):
    if not ISOLATE:
        pytest.skip("would crash the test process without GRAPHPASS_FUZZ_ISOLATE")
    _regression("const-value-not-its-dtype", worker)
