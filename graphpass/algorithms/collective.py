"""collective: one CollectiveReduceV2 per tower; runs on CPUs and GPUs, NCCL or ring underneath.

A TensorFlow cluster remembers each collective group (its devices) and instance (its shape and
type) by key, across sessions. Keys are therefore derived from what they stand for: the group key
from the device list, instance keys from the reductions' names, shapes and types; two different
graphs on one long-lived cluster then do not collide, and the same rewrite gets the same keys.
"""

from __future__ import annotations

import zlib

from tensorflow.core.framework import types_pb2

from ..context import RewriteContext
from ..errors import ConfigError
from ..ir.rewriter import bool_attr, float_attr, int_attr, str_attr, type_attr
from .base import Algorithm, Builder

KEY_SPACE = 2**30


def _digest(text: str) -> int:
    return zlib.crc32(text.encode())


class Collective(Algorithm):
    name = "collective"
    summary = "CollectiveReduceV2 on every device (keys derived from the devices and the gradients)"

    def __init__(
        self,
        communication_hint: str = "auto",
        group_key: int | None = None,
        instance_key_base: int | None = None,
    ):
        self.communication_hint = communication_hint
        self.group_key = group_key
        self.instance_key_base = instance_key_base

    def check(self, ctx: RewriteContext) -> None:
        for node in ctx.graph.nodes():
            if node.op.startswith("Collective"):
                raise ConfigError(
                    f"the graph already has collective op '{node.name}'; its keys could clash with "
                    "the all-reduce graphpass would add"
                )

    def prepare(self, ctx: RewriteContext) -> None:
        self._shared: dict[int, tuple[str, str]] = {}
        self._group = self.group_key or 1 + _digest("|".join(ctx.devices)) % KEY_SPACE
        signature = "|".join(f"{r.key}:{r.shape}:{r.dtype}" for r in ctx.pending)
        self._base = self.instance_key_base or 1 + (_digest(signature) % 2**20) * 1024

    def _group_consts(self, b: Builder, tower: int) -> tuple[str, str]:
        if tower not in self._shared:
            dev = b.device(tower)
            i32 = types_pb2.DT_INT32
            size = b.rw.const(b.rw.unique_name(f"tower{tower}/allreduce/group_size"), b.k, i32, dev)
            key = b.rw.const(b.rw.unique_name(f"tower{tower}/allreduce/group_key"), self._group, i32, dev)
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
                        "communication_hint": str_attr(self.communication_hint),
                        "timeout_seconds": float_attr(0.0),
                        "is_stateless": bool_attr(False),
                        "Nordering_token": int_attr(0),
                        "max_subdivs_per_device": int_attr(-1),
                    },
                    dev,
                )
            )
        return out
