"""pack-gradients: concatenate gradients per dtype into a few flat packs before the all-reduce and
cut them back into shape after, so K-way reductions run a few times instead of once per gradient."""

from __future__ import annotations

from dataclasses import dataclass

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import dtypes

from .. import naming
from ..algorithms.base import chunk_sizes
from ..context import Pack, Reduction, RewriteContext
from ..errors import ConfigError, plural
from ..ir import names
from ..ir.rewriter import int_attr, type_attr
from .base import Pass, PassResult, option

DEFAULT_SPLIT = 8
I32 = types_pb2.DT_INT32


@dataclass(frozen=True)
class PackGradients(Pass):
    name = "pack-gradients"
    summary = "concatenate gradients into num_split packs (or byte buckets) per dtype around the reduction"
    requires = ("towers",)
    provides = ("gradient-packs",)
    before = ("reduced-gradients",)  # it packs the gradients that allreduce then reduces

    num_split: int | None = option(
        None, "cut each dtype's concatenated gradients into this many packs (default 8)"
    )
    bucket_bytes: int | None = option(
        None, "instead: fill packs of at most this many bytes, last gradients first"
    )
    min_pack_elements: int = option(
        1024, "num_split mode: never cut packs smaller than this (the reference's threshold)"
    )

    def run(self, ctx: RewriteContext) -> PassResult:
        if self.num_split is not None and self.bucket_bytes is not None:
            raise ConfigError("pack-gradients: give num_split or bucket_bytes, not both")
        if self.num_split is not None and self.num_split < 1:
            raise ConfigError("pack-gradients: num_split must be at least 1")
        if self.bucket_bytes is not None and self.bucket_bytes < 1:
            raise ConfigError("pack-gradients: bucket_bytes must be at least 1")
        if self.min_pack_elements < 1:
            raise ConfigError("pack-gradients: min_pack_elements must be at least 1")
        if not ctx.pending:
            return PassResult(False, "no gradients to pack", {"packs": 0, "unpacked": []})

        packable, left = [], []
        for red in ctx.pending:
            (packable if red.kind == "dense" and red.num_elements is not None else left).append(red)
        # One pack group per dtype; with parameter servers also per destination device, so each
        # pack is aggregated where its variables live.
        groups: dict[tuple[int, str], list[Reduction]] = {}
        for red in packable:
            where = "" if red.all_reduce else ctx.graph.node(red.outputs[0]).device
            groups.setdefault((red.dtype, where), []).append(red)

        packer = _Packer(ctx)
        new: list[Reduction] = []
        for reds in groups.values():
            if self.bucket_bytes is not None:
                for bucket in _buckets(reds, self.bucket_bytes):
                    new.extend(packer.pack(bucket, 1))
            else:
                total = sum(r.num_elements for r in reds)
                pieces = min(self.num_split or DEFAULT_SPLIT, total // self.min_pack_elements)
                new.extend(packer.pack(reds, max(1, pieces)))
        ctx.pending = left + new
        if left:
            reasons = ", ".join(
                f"{r.key} ({'sparse' if r.kind != 'dense' else 'no static shape'})" for r in left
            )
            ctx.notes.append(f"left unpacked: {reasons}")
        summary = f"{plural(len(packable), 'gradient')} in {plural(len(new), 'pack')}"
        if left:
            summary += f", {len(left)} left unpacked"
        return PassResult(True, summary, {"packs": len(new), "unpacked": [r.key for r in left]})


def _buckets(reds: list[Reduction], limit: int) -> list[list[Reduction]]:
    """Gradients in reverse order (the last layers' are ready first), cut before a bucket would
    pass `limit` bytes; a gradient larger than `limit` gets a bucket of its own."""
    out: list[list[Reduction]] = []
    size = 0
    for red in reversed(reds):
        nbytes = red.num_elements * dtypes.as_dtype(red.dtype).size
        if out and size + nbytes <= limit:
            out[-1].append(red)
            size += nbytes
        else:
            out.append([red])
            size = nbytes
    return out


class _Packer:
    def __init__(self, ctx: RewriteContext):
        self.ctx = ctx
        self.rw = ctx.rewriter
        self.count = 0

    def _node(self, scope: str, leaf: str, op: str, inputs, attrs, device: str) -> str:
        return self.rw.add(self.rw.unique_name(f"{scope}/{leaf}"), op, inputs, attrs, device).name

    def _const(self, scope: str, leaf: str, value, device: str) -> str:
        return self.rw.const(self.rw.unique_name(f"{scope}/{leaf}"), value, I32, device).name

    def _concat(self, scope, tensors, dtype, device) -> str:
        """The ConcatV2 node of `tensors` (the tensor itself when there is one)."""
        if len(tensors) == 1:
            return tensors[0]
        axis = self._const(scope, "axis", 0, device)
        return self._node(
            scope,
            "concat",
            "ConcatV2",
            list(tensors) + [axis],
            {"T": type_attr(dtype), "N": int_attr(len(tensors)), "Tidx": type_attr(I32)},
            device,
        )

    def _split(self, scope, tensor, sizes, dtype, device) -> list[str]:
        if len(sizes) == 1:
            return [tensor]
        size_c = self._const(scope, "sizes", sizes, device)
        axis = self._const(scope, "split_axis", 0, device)
        node = self._node(
            scope,
            "split",
            "SplitV",
            [tensor, size_c, axis],
            {"T": type_attr(dtype), "Tlen": type_attr(I32), "num_split": int_attr(len(sizes))},
            device,
        )
        return [names.tensor(node, j) for j in range(len(sizes))]

    def _reshape(self, scope, leaf, tensor, shape, dtype, device) -> str:
        shape_c = self._const(scope, f"{leaf}/shape", shape, device)
        return self._node(
            scope,
            leaf,
            "Reshape",
            [tensor, shape_c],
            {"T": type_attr(dtype), "Tshape": type_attr(I32)},
            device,
        )

    def pack(self, reds: list[Reduction], pieces: int) -> list[Reduction]:
        """Pack `reds` (one dtype) into `pieces` reductions; wire the unpacked results into the
        original reductions' outputs; record the pack in the context."""
        g = self.count
        self.count += 1
        dtype = reds[0].dtype
        sizes = [r.num_elements for r in reds]
        total = sum(sizes)
        pieces = max(1, min(pieces, total))
        piece_sizes = chunk_sizes(total, pieces)
        k = len(reds[0].inputs)
        all_reduce = reds[0].all_reduce
        rw = self.rw

        pack_inputs: list[list[str]] = [[] for _ in range(pieces)]
        concats, splits = [], []
        for i in range(k):
            dev = self.ctx.devices[i]
            scope = naming.pack_scope(g, i)
            flat = [
                self._reshape(scope, f"flat{n}", r.inputs[i], [-1], dtype, dev) for n, r in enumerate(reds)
            ]
            whole = self._concat(scope, flat, dtype, dev)
            parts = self._split(scope, whole, piece_sizes, dtype, dev)
            concats.append(whole if len(flat) > 1 else "")
            splits.append(names.node_of(parts[0]) if pieces > 1 else "")
            for j, t in enumerate(parts):
                pack_inputs[j].append(t)

        outputs_per_piece: list[list[str]] = []
        for j in range(pieces):
            if all_reduce:
                outs = []
                for i in range(k):
                    name = rw.unique_name(f"{naming.pack_scope(g, i)}/reduced{j}")
                    rw.add(
                        name, "Identity", [pack_inputs[j][i]], {"T": type_attr(dtype)}, self.ctx.devices[i]
                    )
                    outs.append(name)
            else:
                device = self.ctx.graph.node(reds[0].outputs[0]).device
                name = rw.unique_name(f"{naming.pack_scope(g)}/reduced{j}")
                rw.add(name, "Identity", [pack_inputs[j][0]], {"T": type_attr(dtype)}, device)
                outs = [name]
            outputs_per_piece.append(outs)

        unpack_concats, unpack_splits, reshapes = [], [], []
        for o in range(len(reds[0].outputs)):
            scope = f"{naming.pack_scope(g, o if all_reduce else None)}/unpack"
            dev = self.ctx.graph.node(outputs_per_piece[0][o]).device
            whole = self._concat(scope, [outputs_per_piece[j][o] for j in range(pieces)], dtype, dev)
            parts = self._split(scope, whole, sizes, dtype, dev)
            unpack_concats.append(whole if pieces > 1 else "")
            unpack_splits.append(names.node_of(parts[0]) if len(reds) > 1 else "")
            shaped_all = []
            for n, (red, part) in enumerate(zip(reds, parts, strict=True)):
                sink = red.outputs[o]
                sink_dev = self.ctx.graph.node(sink).device or dev
                shaped = self._reshape(scope, f"grad{n}", part, list(red.shape), dtype, sink_dev)
                rw.set_inputs(sink, [shaped])
                shaped_all.append(shaped)
            reshapes.append(tuple(shaped_all))

        variables = [v for r in reds for v in r.variables]
        packed = [
            Reduction(
                key=f"pack{g}_{j}",
                inputs=pack_inputs[j],
                outputs=outputs_per_piece[j],
                dtype=dtype,
                shape=[piece_sizes[j]],
                variables=variables,
            )
            for j in range(pieces)
        ]
        self.ctx.packs.append(
            Pack(
                index=g,
                gradients=tuple(r.key for r in reds),
                sizes=tuple(sizes),
                pieces=tuple(r.key for r in packed),
                piece_sizes=tuple(piece_sizes),
                concats=tuple(concats),
                splits=tuple(splits),
                unpack_concats=tuple(unpack_concats),
                unpack_splits=tuple(unpack_splits),
                reshapes=tuple(reshapes),
            )
        )
        return packed
