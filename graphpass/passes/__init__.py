"""The pass registry: pass name -> pass class. The YAML loader resolves names here."""

from __future__ import annotations

from .allreduce import AllReduce
from .base import Pass, PassResult
from .pack_gradients import PackGradients
from .place_variables import PlaceVariables
from .replicate import Replicate

REGISTRY: dict[str, type[Pass]] = {
    cls.name: cls for cls in (Replicate, PlaceVariables, PackGradients, AllReduce)
}

__all__ = ["REGISTRY", "Pass", "PassResult"]
