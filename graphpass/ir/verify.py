"""Structural invariants checked between passes: inputs resolve, no cycles outside loop back-edges,
every node placed, collective groups consistent across towers, gradient packs and unpacks agree."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from itertools import chain, filterfalse

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import dtypes
from tensorflow.python.framework.device_spec import DeviceSpecV2

from .. import opdefs
from ..errors import InternalError, InvalidGraphError
from . import names
from .graph import Graph
from .verify_exchange import check_collectives, check_packs, find_packs
from .walks import BACK_EDGE_OPS, find_cycle, without

NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")  # TensorFlow's rule for op names


def validate_input(graph: Graph) -> None:
    """Refuse a malformed input graph with one InvalidGraphError naming the node: names TensorFlow
    would reject, op types it does not know, as many data inputs as the op takes, inputs that
    name no node or no such output, data inputs after control inputs,
    colocation with missing nodes, device strings that do not parse. Runs before anything hands
    the graph to TensorFlow (whose importer crashes on some of these). Parses every input once,
    into the graph's cache."""
    nodes = graph._nodes
    outputs: dict[str, int] = {}
    devices: set[str] = set()
    known_ops: set[str] = set()
    producer = graph._ref_node
    checked: dict[tuple[str, ...], tuple[str, ...]] = {}  # control inputs as written -> producers
    collectives: dict[str, list] = defaultdict(list)
    for name, node in nodes.items():
        if not NODE_NAME.match(name):
            raise InvalidGraphError(f"node name {name!r} is not a valid TensorFlow op name")
        op = node.op
        if op not in known_ops:
            opdefs.op_def(op, name)
            known_ops.add(op)
        if op in COLLECTIVE_OPS:
            collectives[op].append(node)
        elif op == "Const":
            _check_constant(node)
        refs = list(node.input)
        data: list[str] = []
        reads: list[tuple[str, int]] = []
        k = 0
        for ref in refs:  # data inputs (a control input ends them)
            if ref[:1] == "^":
                break
            k += 1
            colon = ref.rfind(":")
            if colon < 0:
                if ref not in nodes:
                    raise InvalidGraphError(f"node '{name}' reads '{ref}', which is not in the graph")
                data.append(ref)
                continue
            digits = ref[colon + 1 :]
            index = int(digits) if digits.isascii() and digits.isdigit() else 0
            source = ref[:colon] if index or digits == "0" else ref
            if source not in nodes:
                raise InvalidGraphError(f"node '{name}' reads '{ref}', which is not in the graph")
            data.append(source)
            if index > 0:
                reads.append((source, index))
                if source not in outputs:
                    outputs[source] = len(opdefs.output_types(nodes[source]))
                if index >= outputs[source]:
                    raise InvalidGraphError(
                        f"node '{name}' reads output {index} of '{source}', which has "
                        f"{outputs[source]} outputs"
                    )
        ctrl: tuple[str, ...] = ()
        if k < len(refs):
            rest = tuple(refs[k:])
            ctrl = checked.get(rest)
            if ctrl is None:
                if not names.all_control(rest):
                    raise InvalidGraphError(f"node '{name}' has a data input after a control input")
                ctrl = graph._shared(tuple(map(producer.__getitem__, rest)))
                if not all(map(nodes.__contains__, ctrl)):
                    missing = next(p for p in ctrl if p not in nodes)
                    raise InvalidGraphError(f"node '{name}' reads '^{missing}', which is not in the graph")
                checked[rest] = ctrl
        expected = opdefs.num_inputs(node)
        if k != expected:
            raise InvalidGraphError(f"node '{name}' ({op}) has {k} data inputs, but the op takes {expected}")
        graph._store_parse(name, tuple(data), ctrl, tuple(reads))
        for target in graph.colocation(name):
            if target not in nodes:
                raise InvalidGraphError(
                    f"node '{name}' is colocated (_class) with '{target}', which is not in the graph"
                )
        device = node.device
        if device and device not in devices:
            try:
                DeviceSpecV2.from_string(device)
            except (ValueError, TypeError):
                raise InvalidGraphError(
                    f"node '{name}' has device {device!r}, which is not a device name"
                ) from None
            devices.add(device)
    if collectives:  # the input's own: graphpass's are checked at the end, as its own errors
        try:
            check_collectives(graph, collectives)
        except InternalError as e:
            raise InvalidGraphError(f"the input graph's own collective ops do not agree: {e}") from None


COLLECTIVE_OPS = frozenset({"CollectiveReduceV2", "NcclAllReduce"})


def _check_constant(node) -> None:
    """A Const whose value is not of its dtype, or whose packed bytes do not fill its shape:
    TensorFlow's shape inference aborts the process reading such a value (a shape or an axis)."""
    value = node.attr["value"].tensor if "value" in node.attr else None
    dtype = node.attr["dtype"].type if "dtype" in node.attr else None
    if value is None or dtype is None:
        return  # the op's attrs are checked where they are read
    if value.dtype != dtype:
        raise InvalidGraphError(
            f"constant '{node.name}' holds a value of another type than its dtype attr says"
        )
    if value.tensor_content:
        count = 1
        for d in value.tensor_shape.dim:
            count *= max(d.size, 0)
        try:
            size = dtypes.as_dtype(dtype).size if dtype != types_pb2.DT_STRING else 0
        except TypeError:
            raise InvalidGraphError(f"constant '{node.name}' has a dtype that is not a data type") from None
        if size and len(value.tensor_content) != count * size:
            raise InvalidGraphError(
                f"constant '{node.name}' has {len(value.tensor_content)} bytes of content for "
                f"{count} elements of {size} bytes"
            )


def check(graph: Graph, devices: bool = True, packs: Sequence | None = None) -> None:
    """Raise InternalError naming the first broken invariant.

    Args:
        graph: the graph to check.
        devices: also require every node to have a device (true once towers are placed).
        packs: the gradient packs as pack-gradients recorded them (`RewriteContext.packs`); for
            a graph read from a file (None), they are found by the names naming.py gives them.
    """
    by_op: dict[str, list] = defaultdict(list)
    unplaced = None
    for node in graph.parsed_nodes():
        by_op[node.op].append(node)
        if unplaced is None and not node.device:
            unplaced = node.name
    for c in graph.copies:
        for k in c.live():
            if k in c.detached:
                continue
            op = c.template.ops[c.positions[k]]
            if op in COLLECTIVE_OPS:
                by_op[op].append(c.materialize(k))
            if unplaced is None and not c.devices[k]:
                unplaced = c.name(k)
    check_edges(graph, by_op)
    if devices and unplaced is not None:
        raise InternalError(f"node '{unplaced}' ({graph.node(unplaced).op}) has no device")
    check_collectives(graph, by_op)
    check_packs(graph, find_packs(graph, by_op) if packs is None else packs)


def check_edges(graph: Graph, by_op: dict[str, list]) -> None:
    """Every input names an existing node (and one of its outputs); data before control inputs;
    colocation targets exist; no cycles but loop back-edges. Linear in the inputs.

    The producers come from the graph's parse of each node's inputs (which refuses a data input
    after a control input); only data inputs are read again, for their output indices. A copy's
    unchanged nodes are not visited one by one: their template tower was checked when it was
    parsed, and they read what it reads, renamed for their tower; so here each copy's renamed
    inputs must exist, and cycles are looked for through a summary of each copy (which of the
    nodes it reads reach which of its nodes that others read).
    """
    has = graph.__contains__
    back = {node.name for op in BACK_EDGE_OPS for node in by_op.get(op, ())}
    outputs: dict[str, int] = {}
    preds: dict[str, tuple] = {}
    for node in graph.parsed_nodes():
        name = node.name
        parsed = graph.producers(name)
        for producer, index in graph.output_reads(name):
            have = outputs.get(producer)
            if have is None:
                known = graph.get(producer)
                have = outputs[producer] = _num_outputs(known) if known is not None else 1 << 30
            if index >= have:
                raise InternalError(f"node '{name}' reads output {index} of '{producer}' (it has {have})")
        preds[name] = without(parsed, back)
        for target in graph.colocation(name):
            if target not in graph:
                raise InternalError(f"node '{name}' is colocated with missing node '{target}'")
    referenced = set(chain.from_iterable(chain.from_iterable(preds.values())))
    unparsed = referenced.difference(graph.parsed_names())  # copies' nodes, or missing ones
    for p in sorted(filterfalse(has, unparsed)):
        reader = next(n for n, (data, ctrl) in preds.items() if p in data or p in ctrl)
        raise InternalError(f"node '{reader}' reads '{p}', which does not exist")
    if graph.copies:
        exits: dict[int, set[int]] = defaultdict(set)  # per template: members read from outside
        by_prefix = {c.prefix: c for c in graph.copies}
        for name in unparsed:
            c = by_prefix.get(name[: name.find("/") + 1])
            if c is not None:
                k = c.slot_of.get(name[len(c.prefix) :])
                if k is not None:
                    exits[id(c.template)].add(c.positions[k])
        summaries: dict = {}
        for c in graph.copies:
            preds.update(_copy_preds(graph, c, unparsed, exits[id(c.template)], summaries))
    cycle = find_cycle(preds)
    if cycle:
        raise InternalError(f"the graph has a cycle through node(s) {', '.join(cycle[:5])}")


def _copy_preds(graph: Graph, c, referenced: set[str], exits: set[int], summaries: dict) -> dict[str, tuple]:
    """For the cycle search, copy `c` summarised: each of its nodes that a node outside it reads
    gets, as producers, stand-ins for the outside nodes it depends on within the copy (those
    with inputs: the others close no cycle), one stand-in per set of them reaching the same
    ones. Checks on the way that every outside node the copy reads exists."""
    t = c.template
    key = (id(t), tuple(c.positions), frozenset(c.removed), frozenset(c.detached))
    summary = summaries.get(key)
    if summary is None:
        live = tuple(c.positions[k] for k in c.live() if k not in c.detached)
        summary = summaries[key] = _summary(graph, t, live, exits)
    own, groups = summary
    for e in own:
        if c.rename(e) not in graph:
            raise InternalError(
                f"tower {c.index}'s copy of tower {t.index} reads '{c.rename(e)}', which does not exist"
            )
    out: dict[str, tuple] = {}
    exit_hubs: dict[int, list[str]] = {}
    for n, (bits, group) in enumerate(groups):
        hub = f"\0{c.prefix}{n}"  # no node is named so
        out[hub] = (tuple(map(c.rename, group)), ())
        for j in bits:
            exit_hubs.setdefault(j, []).append(hub)
    bases = t.bases
    for j, hubs in exit_hubs.items():
        name = c.prefix + bases[j]
        if name in referenced:
            out[name] = (tuple(hubs), ())
    return out


def _summary(graph: Graph, t, live: tuple[int, ...], read: set[int]):
    """For template `t`'s members `live`: the outside nodes of its own tower they read (a copy
    reads its tower's counterparts, to be checked per copy), and, grouped by the members read
    from outside (the exits) they reach within the copy, the outside nodes with inputs they read."""
    member = set(live)
    position = t.position
    outside: dict[int, list[str]] = {}
    own: set[str] = set()
    reads_any: dict[str, bool] = {}  # an outside node read: whether it has inputs (checked once)
    for j in live:
        data, ctrl = t.producers[j]
        ext = []
        for p in dict.fromkeys(data + ctrl):
            if position.get(p) in member:
                continue
            has = reads_any.get(p)
            if has is None:
                if p not in graph:
                    raise InternalError(
                        f"'{t.names[j]}', copied as a tower, reads '{p}', which does not exist"
                    )
                if (graph.tower_of(p) or (None,))[0] == t.index:
                    own.add(p)
                has = reads_any[p] = any(graph.producers(p))
            if has:
                ext.append(p)
        if ext:
            outside[j] = ext
    exits = [j for j in live if j in read]
    bit = {j: 1 << i for i, j in enumerate(exits)}
    reach: dict[int, int] = {}
    for j in reversed(_members_in_order(t, member)):  # what member j reaches among the exits
        b = bit.get(j, 0)
        for u in t.readers.get(t.names[j], ()):
            if u in member and t.ops[u] not in BACK_EDGE_OPS:
                b |= reach.get(u, 0)
        reach[j] = b
    masks: dict[str, int] = {}
    for j, ext in outside.items():
        b = reach.get(j, 0)
        if b:
            for e in ext:
                masks[e] = masks.get(e, 0) | b
    by_mask: dict[int, list[str]] = {}
    for e, mask in sorted(masks.items()):
        by_mask.setdefault(mask, []).append(e)
    groups = []
    for mask, group in sorted(by_mask.items()):
        bits = []
        while mask:
            low = mask & -mask
            bits.append(exits[low.bit_length() - 1])
            mask ^= low
        groups.append((bits, group))
    return sorted(own), groups


def _members_in_order(t, member: set[int]) -> list[int]:
    """The template positions `member` in an order where each comes after the members it reads
    (loop back-edges aside)."""
    pending = {}
    users: dict[int, list[int]] = {}
    position = t.position
    for j in member:
        data, ctrl = t.producers[j]
        ins = [position[p] for p in dict.fromkeys(data + ctrl) if position.get(p) in member]
        ins = [i for i in ins if t.ops[i] not in BACK_EDGE_OPS]
        pending[j] = len(ins)
        for i in ins:
            users.setdefault(i, []).append(j)
    ready = sorted(j for j in member if not pending[j])
    out = []
    while ready:
        j = ready.pop()
        out.append(j)
        for u in users.get(j, ()):
            pending[u] -= 1
            if not pending[u]:
                ready.append(u)
    return out


def _num_outputs(node) -> int:
    try:
        return len(opdefs.output_types(node))
    except (InvalidGraphError, KeyError):
        return 1 << 30  # unknown op or malformed attrs: reported by the analysis, not here
