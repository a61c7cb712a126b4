"""All-reduce algorithms: name -> Algorithm. Each builds one reduction's subgraph."""

from __future__ import annotations

from .base import Algorithm, Builder
from .collective import Collective
from .colocate import Colocate
from .halving_doubling import HalvingDoubling
from .hierarchical import Hierarchical
from .naive import Naive
from .nccl import Nccl
from .ring import Ring

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (Nccl(), Collective(), Hierarchical(), Naive(), Colocate(), Ring(), HalvingDoubling())
}

__all__ = ["ALGORITHMS", "Algorithm", "Builder"]
