"""collective: one CollectiveReduceV2 per tower; runs on CPUs and GPUs, NCCL or ring underneath.

A TensorFlow cluster remembers each collective group (its devices) and instance (its shape and
type) by key, across sessions. Keys are therefore derived from what they stand for: the group key
from the device list, instance keys from the reductions' names, shapes and types; two different
graphs on one long-lived cluster then do not collide, and the same rewrite gets the same keys.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from tensorflow.core.framework import types_pb2

from .. import naming
from ..context import RewriteContext
from ..errors import ConfigError
from ..ir.rewriter import bool_attr, float_attr, int_attr, str_attr, type_attr
from ..options import option
from .base import Algorithm, Builder

KEY_SPACE = 2**30
MAX_KEY = 2**31 - 2**20  # instance keys count up from the base, one per reduction


def _digest(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class CollectiveOptions:
    communication_hint: Literal["auto", "ring", "nccl"] = option(
        "auto", "the implementation TensorFlow should pick"
    )
    group_key: int | None = option(None, "the group key (default: derived from the device list)")
    instance_key_base: int | None = option(
        None, "the first instance key (default: derived from the gradients)"
    )

    def __post_init__(self) -> None:
        for key in (self.group_key, self.instance_key_base):
            if key is not None and not 0 < key < MAX_KEY:
                raise ConfigError("allreduce: collective keys must be positive 31-bit integers")


class Collective(Algorithm):
    name = "collective"
    summary = "CollectiveReduceV2 on every device (keys derived from the devices and the gradients)"
    Options = CollectiveOptions
    options: CollectiveOptions

    def check(self, ctx: RewriteContext) -> None:
        for node in ctx.graph.nodes():
            if node.op.startswith("Collective"):
                raise ConfigError(
                    f"the graph already has collective op '{node.name}'; its keys could clash with "
                    "the all-reduce graphpass would add"
                )

    def prepare(self, ctx: RewriteContext) -> None:
        self._shared: dict[int, tuple[str, str]] = {}
        self._group = self.options.group_key or 1 + _digest("|".join(ctx.devices)) % KEY_SPACE
        signature = "|".join(f"{r.key}:{r.shape}:{r.dtype}" for r in ctx.pending)
        self._base = self.options.instance_key_base or 1 + (_digest(signature) % 2**20) * 1024

    def _group_consts(self, b: Builder, tower: int) -> tuple[str, str]:
        if tower not in self._shared:
            dev = b.device(tower)
            i32 = types_pb2.DT_INT32
            scope = naming.tower_name(tower, naming.ALLREDUCE)
            size = b.rw.const(b.rw.unique_name(f"{scope}/group_size"), b.k, i32, dev)
            key = b.rw.const(b.rw.unique_name(f"{scope}/group_key"), self._group, i32, dev)
            self._shared[tower] = (size.name, key.name)
        return self._shared[tower]

    def build(self, b: Builder) -> list[str]:
        instance = self._base + b.ordinal
        out = []
        for i, tensor in enumerate(b.red.inputs):
            dev = b.device(i)
            size, key = self._group_consts(b, i)
            inst = b.rw.const(b.name(i, "instance_key"), instance, types_pb2.DT_INT32, dev).name
            out.append(
                b.add(
                    i,
                    "CollectiveReduceV2",
                    "CollectiveReduceV2",
                    [tensor, size, key, inst],
                    {
                        "T": type_attr(b.red.dtype),
                        "merge_op": str_attr("Add"),
                        "final_op": str_attr("Div" if b.average else "Id"),
                        "communication_hint": str_attr(self.options.communication_hint),
                        "timeout_seconds": float_attr(0.0),
                        "is_stateless": bool_attr(False),
                        "Nordering_token": int_attr(0),
                        "max_subdivs_per_device": int_attr(-1),
                    },
                    dev,
                )
            )
        return out
