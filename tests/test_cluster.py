"""A rewrite for a multi-worker cluster, run through one client session on real (in-process) gRPC
servers: 2 workers x 2 CPU devices and a parameter-server task on loopback ports."""

from __future__ import annotations

import socket

import pytest
import tensorflow as tf

import graphpass
from graphpass.devices import cluster_devices
from graphpass.execution import compare

from .conftest import FIXTURES, unpinned

tf1 = tf.compat.v1
LEADER = "/job:worker/replica:0/task:0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _config():
    config = tf1.ConfigProto(device_count={"CPU": 2})
    config.experimental.collective_group_leader = LEADER
    return config


@pytest.fixture(scope="module")
def cluster():
    spec = {"worker": [f"localhost:{_free_port()}" for _ in range(2)], "ps": [f"localhost:{_free_port()}"]}
    cluster_spec = tf.train.ClusterSpec(spec)
    servers = [
        tf1.train.Server(cluster_spec, job_name="worker", task_index=i, config=_config()) for i in range(2)
    ]
    servers.append(tf1.train.Server(cluster_spec, job_name="ps", task_index=0, config=_config()))
    return spec, servers


def _assert_trains_on_cluster(servers, fx, single, out, seed: int) -> None:
    """`out`, run on the cluster, steps like `single` (fx's graph) on one CPU, replicas equal."""
    result = compare(
        single,
        out,
        4,
        fx.batches(8, 3, seed=seed),
        fx.train_op,
        fx.init_op,
        timeout_s=120,
        target=servers[0].target,
        config=_config(),
    )
    assert not result.missing and not result.initial_mismatch and not result.replica_mismatch
    worst = result.worst()
    assert worst[1] <= 1e-5, f"{worst[0]} differs by {worst[1]:.2e}"


@pytest.mark.parametrize("rules", ["replicated-collective", "replicated-hierarchical", "ps-least-loaded"])
@pytest.mark.parametrize("model", ["mlp_adam", "conv_momentum"])
def test_cluster_trains_like_single_tower(load_fixture, cluster, rules, model):
    spec, servers = cluster
    fx = load_fixture(model)
    towers, ps = cluster_devices(spec, 2, "CPU")
    assert towers == [
        "/job:worker/task:0/device:CPU:0",
        "/job:worker/task:0/device:CPU:1",
        "/job:worker/task:1/device:CPU:0",
        "/job:worker/task:1/device:CPU:1",
    ]
    out = graphpass.rewrite(fx.graph_def, devices=towers, rules=rules, ps_devices=ps, verify_each=True)
    _assert_trains_on_cluster(servers, fx, fx.graph_def, out, seed=1)
    devices = {n.name: n.device for n in out.node}
    if rules.startswith("ps"):
        variables = [v for v in fx.meta["variables"]]
        assert {devices[v] for v in variables} == {"/job:ps/task:0/device:CPU:0"}
    if rules == "replicated-hierarchical":
        sums = sorted({devices[n] for n in devices if n.endswith("/group0_sum") or n.endswith("/group1_sum")})
        assert {d.split("/device")[0] for d in sums} == {"/job:worker/task:0", "/job:worker/task:1"}


@pytest.mark.slow
@pytest.mark.parametrize("rules", ["replicated-collective", "ps-least-loaded"])
@pytest.mark.parametrize("model", ["mlp_cpu_pinned", "mlp_gpu_pinned"])
def test_pinned_models_train_on_the_workers(load_fixture, cluster, rules, model):
    """A model built under tf.device("/cpu:0") or ("/gpu:0"): the pins name no worker, so they
    are mapped onto the workers' devices, and the step is the single tower's."""
    spec, servers = cluster
    fx = load_fixture(model)
    towers, ps = cluster_devices(spec, 2, "CPU")
    out = graphpass.rewrite(fx.graph_def, devices=towers, rules=rules, ps_devices=ps, verify_each=True)
    assert {n.device for n in out.node} <= set(towers) | set(ps)
    _assert_trains_on_cluster(servers, fx, unpinned(fx).graph_def, out, seed=2)


def test_workers_flag_and_cluster_file(tmp_path, cluster, capsys):
    import json

    from graphpass import cli

    spec, _ = cluster
    (tmp_path / "cluster.json").write_text(
        json.dumps({"cluster": spec, "task": {"type": "worker", "index": 0}})
    )
    code = cli.main(
        [
            "rewrite",
            str(FIXTURES / "mlp_sgd.pb"),
            "-o",
            str(tmp_path / "a.pb"),
            "--devices",
            "2",
            "--cluster",
            str(tmp_path / "cluster.json"),
            "--device-type",
            "CPU",
            "--rules",
            "ps-least-loaded",
            "-q",
        ]
    )
    assert code == 0
    devices = {n.device for n in graphpass.load_graph(tmp_path / "a.pb").node}
    assert "/job:ps/task:0/device:CPU:0" in devices and "/job:worker/task:1/device:CPU:1" in devices
    code = cli.main(
        [
            "rewrite",
            str(FIXTURES / "mlp_sgd.pb"),
            "-o",
            str(tmp_path / "b.pb"),
            "--devices",
            "2",
            "--workers",
            "3",
            "--rules",
            "replicated-collective",
            "-q",
        ]
    )
    assert code == 0
    devices = {n.device for n in graphpass.load_graph(tmp_path / "b.pb").node}
    assert "/job:worker/task:2/device:GPU:1" in devices
    code = cli.main(
        [
            "rewrite",
            str(FIXTURES / "mlp_sgd.pb"),
            "-o",
            str(tmp_path / "c.pb"),
            "--devices",
            "2",
            "--workers",
            "2",
        ]
    )
    assert code == 2 and "nccl all-reduce spans the GPUs of one machine" in capsys.readouterr().err
