"""nccl: NcclAllReduce across the GPUs of one machine (no CPU kernel exists)."""

from __future__ import annotations

from .. import devices as devmod
from ..context import RewriteContext
from ..errors import ConfigError
from ..ir.rewriter import int_attr, str_attr, type_attr
from .base import Algorithm, Builder


class Nccl(Algorithm):
    name = "nccl"
    summary = "NcclAllReduce (sum) on every GPU, then a local scale by 1/K"

    def check(self, ctx: RewriteContext) -> None:
        not_gpu = [d for d in ctx.devices if devmod.device_type(d) != "GPU"]
        if not_gpu:
            raise ConfigError(
                f"nccl all-reduce runs on GPUs only, and {not_gpu[0]} is not a GPU: use "
                "--device-type GPU, or --rules replicated-collective for CPU devices"
            )
        hosts = {devmod.host_of(d) for d in ctx.devices}
        if len(hosts) > 1:
            raise ConfigError("nccl all-reduce spans the GPUs of one machine; the towers are on several")

    def build(self, b: Builder) -> list[str]:
        attrs = {  # the same in every tower
            "reduction": str_attr("sum"),
            "T": type_attr(b.red.dtype),
            "num_devices": int_attr(b.k),
            "shared_name": str_attr(b.scope(None)),
        }
        out = []
        for i, tensor in enumerate(b.red.inputs):
            dev = b.device(i)
            summed = b.add(i, "NcclAllReduce", "NcclAllReduce", [tensor], attrs, dev)
            out.append(b.scaled(i, summed, dev))
        return out
