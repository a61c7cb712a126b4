"""The Algorithm contract and Builder, the helpers every algorithm uses to emit its nodes."""

from __future__ import annotations

from typing import Any, ClassVar

from tensorflow.core.framework import types_pb2

from .. import naming
from ..context import Reduction, RewriteContext
from ..errors import ConfigError
from ..ir import names
from ..ir.rewriter import int_attr, type_attr

FLOAT_TYPES = (types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_DOUBLE, types_pb2.DT_BFLOAT16)


class Builder:
    """Emits the nodes of one reduction: names under `[tower{i}/]allreduce/<key>/`, scaling (by
    constants the pass shares, under `[tower{i}/]allreduce_shared/`), sums."""

    def __init__(
        self,
        ctx: RewriteContext,
        reduction: Reduction,
        ordinal: int,
        average: bool,
        shared: dict | None = None,
    ):
        self.ctx = ctx
        self.rw = ctx.rewriter
        self.red = reduction
        self.ordinal = ordinal
        self.average = average
        self.k = len(reduction.inputs)
        self._shared = {} if shared is None else shared  # constants the pass's reductions share

    def scope(self, tower: int | None) -> str:
        return naming.allreduce_scope(self.red.key, tower)

    def name(self, tower: int | None, leaf: str) -> str:
        return self.rw.unique_name(f"{self.scope(tower)}/{leaf}")

    def device(self, tower: int) -> str:
        return self.ctx.devices[tower]

    def add(self, tower: int | None, leaf: str, op: str, inputs, attrs, device: str) -> str:
        return self.rw.add(self.name(tower, leaf), op, inputs, attrs, device).name

    def add_n(self, tower: int | None, inputs: list[str], device: str, leaf: str = "sum") -> str:
        if len(inputs) == 1:
            return self.add(tower, leaf, "Identity", inputs, {"T": type_attr(self.red.dtype)}, device)
        return self.add(
            tower, leaf, "AddN", inputs, {"T": type_attr(self.red.dtype), "N": int_attr(len(inputs))}, device
        )

    def const(self, tower: int | None, leaf: str, value, dtype: int, device: str) -> str:
        return self.rw.const(self.name(tower, leaf), value, dtype, device).name

    def identity(self, tower: int | None, tensor: str, device: str, leaf: str = "copy") -> str:
        return self.add(tower, leaf, "Identity", [tensor], {"T": type_attr(self.red.dtype)}, device)

    def add2(self, tower: int | None, a: str, b: str, device: str, leaf: str = "add") -> str:
        return self.add(tower, leaf, "AddV2", [a, b], {"T": type_attr(self.red.dtype)}, device)

    def num_elements(self) -> int:
        n = self.red.num_elements
        if n is None:
            raise ConfigError(
                f"the gradient of '{self.red.key}' has no static shape, and this algorithm cuts "
                "gradients into fixed chunks: use collective, hierarchical or naive for this graph"
            )
        return n

    def flatten(self, tower: int, device: str) -> str:
        shape = self.const(tower, "flat_shape", [-1], types_pb2.DT_INT32, device)
        return self.add(
            tower,
            "flat",
            "Reshape",
            [self.red.inputs[tower], shape],
            {"T": type_attr(self.red.dtype), "Tshape": type_attr(types_pb2.DT_INT32)},
            device,
        )

    def unflatten(self, tower: int | None, tensor: str, device: str) -> str:
        shape = self.const(tower, "shape", list(self.red.shape or []), types_pb2.DT_INT32, device)
        return self.add(
            tower,
            "unflat",
            "Reshape",
            [tensor, shape],
            {"T": type_attr(self.red.dtype), "Tshape": type_attr(types_pb2.DT_INT32)},
            device,
        )

    def split(self, tower: int | None, tensor: str, sizes: list[int], device: str) -> list[str]:
        """`tensor` (1-D) cut into pieces of `sizes` (SplitV)."""
        if len(sizes) == 1:
            return [tensor]
        sizes_c = self.const(tower, "chunk_sizes", sizes, types_pb2.DT_INT32, device)
        axis = self.const(tower, "axis", 0, types_pb2.DT_INT32, device)
        node = self.add(
            tower,
            "chunks",
            "SplitV",
            [tensor, sizes_c, axis],
            {
                "T": type_attr(self.red.dtype),
                "Tlen": type_attr(types_pb2.DT_INT32),
                "num_split": int_attr(len(sizes)),
            },
            device,
        )
        return [names.tensor(node, j) for j in range(len(sizes))]

    def concat(self, tower: int | None, tensors: list[str], device: str) -> str:
        if len(tensors) == 1:
            return tensors[0]
        axis = self.const(tower, "concat_axis", 0, types_pb2.DT_INT32, device)
        return self.add(
            tower,
            "gathered",
            "ConcatV2",
            list(tensors) + [axis],
            {
                "T": type_attr(self.red.dtype),
                "N": int_attr(len(tensors)),
                "Tidx": type_attr(types_pb2.DT_INT32),
            },
            device,
        )

    def finish(self, tower: int, tensor: str) -> str:
        """The reduced (flat) tensor back in shape, scaled, on `tower`'s device."""
        dev = self.device(tower)
        return self.scaled(tower, self.unflatten(tower, tensor, dev), dev)

    def scaled(self, tower: int | None, tensor: str, device: str) -> str:
        """`tensor` times 1/K when averaging, else `tensor` itself."""
        if not self.average:
            return tensor
        if self.red.dtype not in FLOAT_TYPES:
            raise ConfigError(
                f"cannot average the {types_pb2.DataType.Name(self.red.dtype)} gradient of "
                f"'{self.red.key}'; use average: false"
            )
        key = ("scale", device, self.red.dtype, self.k)
        factor = self._shared.get(key)
        if factor is None:
            scope = "allreduce_shared" if tower is None else naming.tower_name(tower, "allreduce_shared")
            leaf = f"{scope}/scale_{types_pb2.DataType.Name(self.red.dtype)[3:].lower()}"
            factor = self.rw.const(self.rw.unique_name(leaf), 1.0 / self.k, self.red.dtype, device).name
            self._shared[key] = factor
        return self.add(tower, "mean", "Mul", [tensor, factor], {"T": type_attr(self.red.dtype)}, device)


class Algorithm:
    """One way of reducing K per-tower gradients; `all_reduce` algorithms give every tower a copy.

    A subclass sets `name` (what `allreduce: {algorithm: NAME}` says) and `summary`, and, if it
    takes options of its own, `Options`: a frozen dataclass whose fields are declared with
    `graphpass.options.option` (they are given beside `algorithm:` in a rules file). It is made
    once per allreduce pass run, with those options, so it may keep state between `prepare` and
    the `build` calls.
    """

    name: ClassVar[str] = ""
    all_reduce: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(self, options: Any = None):
        if options is None and self.Options is not None:
            options = self.Options()
        self.options = options

    def check(self, ctx: RewriteContext) -> None:
        """Refuse devices or modes the algorithm cannot serve (ConfigError)."""

    def prepare(self, ctx: RewriteContext) -> None:
        """Called once before the first reduction of a pass."""

    def build(self, b: Builder) -> list[str]:  # pragma: no cover - abstract
        """Emit the reduction; return one tensor per output of `b.red`."""
        raise NotImplementedError


def chunk_sizes(n: int, k: int) -> list[int]:
    """`n` elements in `k` chunks, the first n % k one larger (some may be empty when n < k)."""
    base, extra = divmod(n, k)
    return [base + (1 if c < extra else 0) for c in range(k)]
