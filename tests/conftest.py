"""Shared test helpers: fixture graphs (as built, or re-imported under a name prefix), their
metadata, and the execution-equivalence check every training fixture must pass."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TRAINING_MODELS = ["mlp_sgd", "conv_momentum", "mlp_adam", "mlp_clip"]
# Every fixture that trains exactly like its single tower (batchnorm normalises per tower by
# design; iterator_mlp draws a batch per tower; inference_mlp does not train).
EQUIVALENT = [
    "mlp_sgd",
    "conv_momentum",
    "mlp_adam",
    "mlp_clip",
    "mlp_wide",
    "mixed_dtypes",
    "lstm_v1",
    "lstm_v2",
    "embedding_sgd",
    "embedding_adagrad",
    "embedding_adam",
    "two_optimizers",
    "saver_mlp",
    "loss_scale_v1",
    "loss_scale_v2",
    "accumulate2_v1",
    "accumulate4_v2",
    "bert_adamw",
    "while_ref",
    "while_resource",
    "while_read_value",
    "mlp_cpu_pinned",
]
# The presets whose output runs on CPU devices (nccl has no CPU kernel).
CPU_PRESETS = [
    "replicated-collective",
    "replicated-naive",
    "replicated-ring",
    "replicated-hierarchical",
    "ps-least-loaded",
    "ps-balanced",
    "ps-naive",
]
PREFIXES = ["import/", "a/b/"]  # what tf.import_graph_def writes, and a nested scope


def applicable(model: str, preset: str, k: int) -> bool:
    """Whether `preset` accepts `model` at K=k (hierarchical needs even K; ring cuts gradients
    into chunks and refuses mixed_dtypes' gradient of unknown shape)."""
    if preset == "replicated-hierarchical" and k % 2:
        return False
    return not (model == "mixed_dtypes" and preset == "replicated-ring")


def prefixed(graph_def, prefix: str):
    """`graph_def` re-imported under `prefix` (e.g. "import/"), as tf.import_graph_def does."""
    if not prefix:
        return graph_def
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(graph_def, name=prefix.rstrip("/"))
    return g.as_graph_def()


class Fixture:
    def __init__(self, name: str, prefix: str = ""):
        from graphpass import load_graph

        self.name = name
        self.prefix = prefix
        self.path = FIXTURES / f"{name}.pb"
        meta = json.loads((FIXTURES / f"{name}.json").read_text())
        self.meta = _prefix_meta(meta, prefix) if prefix else meta
        self.graph_def = prefixed(load_graph(self.path), prefix)

    @property
    def train_op(self) -> str:
        return self.meta["train_op"].split(":")[0]

    @property
    def init_op(self) -> str:
        return self.meta["init"]

    def batches(self, batch: int, steps: int, seed: int = 0):
        from graphpass.execution import random_batches

        return random_batches(self.meta["feeds"], batch, steps, seed)


def _prefix_meta(meta: dict, prefix: str) -> dict:
    out = dict(meta)
    out["feeds"] = {prefix + k: v for k, v in meta["feeds"].items()}
    for key in ("train_op", "loss", "init"):
        out[key] = prefix + meta[key]
    out["variables"] = [prefix + v for v in meta["variables"]]
    return out


@pytest.fixture(scope="session")
def load_fixture():
    cache: dict[tuple[str, str], Fixture] = {}

    def get(name: str, prefix: str = "") -> Fixture:
        if (name, prefix) not in cache:
            cache[name, prefix] = Fixture(name, prefix)
        return cache[name, prefix]

    return get


def unpinned(fx: Fixture) -> Fixture:
    """`fx` with its device pins dropped: the single tower as it runs on this machine's CPU."""
    out = Fixture.__new__(Fixture)
    out.meta = fx.meta
    out.graph_def = type(fx.graph_def)()
    out.graph_def.CopyFrom(fx.graph_def)
    for node in out.graph_def.node:
        node.ClearField("device")
    return out


def assert_trains_like(fx: Fixture, out, k: int, batches, rtol: float = 1e-5):
    """Run `fx` (its step state ordered: execution.step_ordered) and its rewrite `out` on K CPU
    devices from the same initial values on `batches`
    and assert the contract: every variable of the single tower is there, starts equal, ends
    within `rtol` (or within the single tower's own rounding noise, where that is larger, see
    execution.rounding_noise), and every replica equals its canonical variable bit for bit."""
    from graphpass.execution import compare, rounding_noise, step_ordered

    # The single tower with its step state ordered: its own unordered read (BERT's learning rate
    # against the global step's increment) wins in practice, and must not lose under load.
    original = step_ordered(fx.graph_def)
    result = compare(original, out, k, batches, fx.train_op, fx.init_op, timeout_s=120)
    assert not result.missing, f"missing from the rewrite: {result.missing[:5]}"
    assert not result.initial_mismatch, f"init differs: {sorted(result.initial_mismatch)[:5]}"
    assert not result.replica_mismatch, f"replicas differ: {sorted(result.replica_mismatch)[:5]}"
    if result.excess(rtol):
        result.rounding = rounding_noise(original, batches, fx.train_op, fx.init_op, timeout_s=120)
    excess = result.excess(rtol)
    assert not excess, ", ".join(
        f"{v} differs by {d:.2e} (allowed {result.allowed(v, rtol):.2e})"
        for v, d in sorted(excess.items())[:5]
    )
    return result
