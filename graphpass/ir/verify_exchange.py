"""Invariants of the exchange between towers, checked by verify: collective groups agree across
towers, and gradient packs and unpacks cut the same number of elements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from tensorflow.python.framework import tensor_util

from .. import naming
from ..errors import InternalError
from . import names
from .graph import Graph


def _const_value(graph: Graph, ref: str):
    node = graph.get(names.node_of(ref))
    if node is None or node.op != "Const":
        return None
    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def check_collectives(graph: Graph, by_op: dict[str, list]) -> None:
    """Each collective instance has group_size ops, one per device, agreeing on group and type;
    each NCCL reduction has num_devices ops on distinct devices."""
    instances: dict[tuple, list] = defaultdict(list)
    for node in by_op.get("CollectiveReduceV2", []) + by_op.get("NcclAllReduce", []):
        if node.op == "CollectiveReduceV2":
            size, key, inst = (_const_value(graph, node.input[i]) for i in (1, 2, 3))
            if size is None or key is None or inst is None:
                continue  # keys computed at run time: nothing static to check
            instances[("collective", int(key), int(inst))].append((node, int(size)))
        elif node.op == "NcclAllReduce":
            instances[("nccl", node.attr["shared_name"].s.decode(), 0)].append(
                (node, node.attr["num_devices"].i)
            )
    for key, members in sorted(instances.items(), key=lambda kv: str(kv[0])):
        sizes = {size for _, size in members}
        first = members[0][0].name
        if len(sizes) != 1:
            raise InternalError(
                f"collective {key[1:]} (with '{first}') has ops that disagree on the group size"
            )
        size = sizes.pop()
        if len(members) != size:
            raise InternalError(
                f"collective {key[1:]} (with '{first}') has {len(members)} ops for a group of {size}"
            )
        devices = [n.device for n, _ in members]
        if len(set(devices)) != len(devices):
            raise InternalError(f"collective {key[1:]} (with '{first}') has two ops on one device")
        if len({n.attr["T"].type for n, _ in members}) != 1:
            raise InternalError(f"collective {key[1:]} (with '{first}') mixes dtypes")


@dataclass(frozen=True)
class FoundPack:
    """A gradient pack of a graph read from a file, found by its nodes' names: what the verifier
    reads of `context.Pack` (the same fields)."""

    label: str
    splits: tuple[str, ...]
    unpack_splits: tuple[str, ...]
    reshapes: tuple[tuple[str, ...], ...]


def find_packs(graph: Graph, by_op: dict[str, list]) -> list[FoundPack]:
    """The gradient packs of a graph without a record of them: SplitV nodes under
    `[tower{i}/]grad_packs/pack{g}/`, those under its `unpack/` scope with the Reshapes of their
    pieces."""
    splits: dict[str, list[str]] = defaultdict(list)
    unpacks: dict[str, list[str]] = defaultdict(list)
    reshapes: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for node in by_op.get("SplitV", ()):
        pack = naming.pack_of(node.name)
        if pack is None:
            continue
        leaf = naming.strip_tower(node.name)[len(naming.PACKS) + len(pack) + 2 :]
        if leaf != "unpack/split" and not leaf.startswith("unpack/split_"):
            splits[pack].append(node.name)
            continue
        unpacks[pack].append(node.name)
        pieces: dict[int, str] = {}
        for user in graph.users(node.name):
            unode = graph.node(user)
            if unode.op == "Reshape":
                ref = names.parse(unode.input[0])
                if ref.node == node.name:
                    pieces.setdefault(ref.index, user)
        reshapes[pack].append(tuple(pieces.get(j, "") for j in range(max(pieces, default=-1) + 1)))
    return [
        FoundPack(pack, tuple(splits[pack]), tuple(unpacks[pack]), tuple(reshapes[pack]))
        for pack in sorted(set(splits) | set(unpacks))
    ]


def check_packs(graph: Graph, packs: Sequence) -> None:
    """A gradient pack's split sizes add up to what its unpacking splits again, and each unpacked
    piece has as many elements as the shape it is reshaped to.

    Args:
        packs: `context.Pack` records (or `FoundPack`s): each pack's `label`, its `splits` (per
            tower), `unpack_splits` (per output) and, per output, the `reshapes` of the pieces;
            "" where there is no such node.
    """
    for pack in packs:
        seen: set[int] = set()
        for split in filter(None, chain(pack.splits, pack.unpack_splits)):
            if split not in graph:
                raise InternalError(f"gradient pack {pack.label}'s split '{split}' is not in the graph")
            sizes = _const_value(graph, graph.node(split).input[1])
            if sizes is not None:
                seen.add(int(np.sum(sizes)))
        if len(seen) > 1:
            raise InternalError(
                f"gradient pack {pack.label} is cut into {sorted(seen)} elements in different places"
            )
        for split, shaped in zip(pack.unpack_splits, pack.reshapes, strict=True):
            if not split:
                continue
            sizes = _const_value(graph, graph.node(split).input[1])
            if sizes is None:
                continue
            for j, (size, user) in enumerate(zip(sizes, shaped, strict=False)):
                if not user:
                    continue
                unode = graph.node(user)
                if unode.op != "Reshape" or unode.input[0] != names.tensor(split, j):
                    raise InternalError(f"'{user}' should reshape piece {j} of {pack.label}'s '{split}'")
                shape = _const_value(graph, unode.input[1])
                if shape is not None and int(np.prod(shape)) != int(size):
                    raise InternalError(
                        f"'{user}' reshapes a {int(size)}-element piece of {pack.label} "
                        f"to {[int(d) for d in shape]}"
                    )
