"""nccl: NcclAllReduce across the GPUs of one machine. It has no CPU kernel, so it is checked by
structure (the golden replicated-nccl case checks the whole graph)."""

from __future__ import annotations

import pytest

import graphpass

from .test_algorithms import refuses, rules


def test_one_op_per_gpu_agreeing_on_the_group(load_fixture):
    k = 4
    out = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=k, rules=rules("replicated", "nccl"))
    ops = [n for n in out.node if n.op == "NcclAllReduce"]
    assert len(ops) == 4 * k
    by_group: dict[bytes, list] = {}
    for n in ops:
        by_group.setdefault(n.attr["shared_name"].s, []).append(n)
    assert len(by_group) == 4
    for group in by_group.values():
        assert sorted(n.device for n in group) == [f"/device:GPU:{i}" for i in range(k)]
        assert {n.attr["num_devices"].i for n in group} == {k}
        assert {n.attr["reduction"].s for n in group} == {b"sum"}


@pytest.mark.parametrize(
    "devices,workers,match",
    [(2, None, "nccl all-reduce runs on GPUs only"), (2, 2, "spans the GPUs of one machine")],
)
def test_refusals(load_fixture, devices, workers, match):
    if workers is None:
        refuses(load_fixture, "replicated", "nccl", devices, match, device_type="CPU")
        return
    with pytest.raises(graphpass.PassFailedError, match=match):
        graphpass.rewrite(
            load_fixture("mlp_sgd").graph_def,
            devices=devices,
            workers=workers,
            rules=rules("replicated", "nccl"),
        )


def test_refuses_parameter_server_mode(load_fixture):
    refuses(load_fixture, "parameter_server", "nccl", 2, "use algorithm colocate or naive", device_type="GPU")
