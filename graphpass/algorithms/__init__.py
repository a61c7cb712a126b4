"""All-reduce algorithms: name -> Algorithm. Each builds one reduction's subgraph."""

from __future__ import annotations

from .base import Algorithm, Builder
from .collective import Collective
from .naive import Naive
from .nccl import Nccl

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (Nccl(), Collective(), Naive())}

__all__ = ["ALGORITHMS", "Algorithm", "Builder"]
