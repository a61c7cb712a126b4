"""Shared test helpers: fixture graphs and their metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TRAINING_MODELS = ["mlp_sgd", "conv_momentum", "mlp_adam", "mlp_clip"]


class Fixture:
    def __init__(self, name: str):
        from graphpass import load_graph

        self.name = name
        self.path = FIXTURES / f"{name}.pb"
        self.meta = json.loads((FIXTURES / f"{name}.json").read_text())
        self.graph_def = load_graph(self.path)

    @property
    def train_op(self) -> str:
        return self.meta["train_op"].split(":")[0]

    @property
    def init_op(self) -> str:
        return self.meta["init"]

    def batches(self, batch: int, steps: int, seed: int = 0):
        from graphpass.execution import random_batches

        return random_batches(self.meta["feeds"], batch, steps, seed)


@pytest.fixture(scope="session")
def load_fixture():
    cache: dict[str, Fixture] = {}

    def get(name: str) -> Fixture:
        if name not in cache:
            cache[name] = Fixture(name)
        return cache[name]

    return get
