"""Rewriter: the one way passes change a Graph; it keeps the use index exact and names unique."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.framework import tensor_util

from ..errors import InternalError
from . import names
from .graph import Graph, NodeDef
from .towers import Copy, Template

AttrValue = attr_value_pb2.AttrValue


def type_attr(dtype: int) -> AttrValue:
    return AttrValue(type=dtype)


def int_attr(value: int) -> AttrValue:
    return AttrValue(i=value)


def bool_attr(value: bool) -> AttrValue:
    return AttrValue(b=value)


def float_attr(value: float) -> AttrValue:
    return AttrValue(f=value)


def str_attr(value: str | bytes) -> AttrValue:
    return AttrValue(s=value.encode() if isinstance(value, str) else value)


def type_list_attr(dtypes: Iterable[int]) -> AttrValue:
    return AttrValue(list=AttrValue.ListValue(type=list(dtypes)))


def _ordered(inputs: list[str]) -> tuple[list[str], int]:
    """Data inputs first, control inputs last (TensorFlow requires it), each control input
    once; and how many data inputs there are."""
    if not any(r[:1] == "^" for r in inputs):
        return inputs, len(inputs)
    data = [r for r in inputs if not r.startswith("^")]
    seen: set[str] = set()
    ctrl = []
    for r in inputs:
        if r.startswith("^") and r not in seen:
            seen.add(r)
            ctrl.append(r)
    return data + ctrl, len(data)


class Rewriter:
    """Mutations of one Graph. Names handed out by `unique_name` are deterministic per graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._reserved: set[str] = set()

    # -- names ---------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        """`base` if free, else `base_1`, `base_2`, ... (free in the graph and not handed out before)."""
        name, k = base, 0
        while name in self.graph or name in self._reserved:
            k += 1
            name = f"{base}_{k}"
        self._reserved.add(name)
        return name

    def unique_base(self, base: str, prefixes: Iterable[str]) -> str:
        """`base`, or `base_1`, ...: the first with every `prefix + base` free; all reserved."""
        prefixes = list(prefixes)
        name, k = base, 0
        while any(p + name in self.graph or p + name in self._reserved for p in prefixes):
            k += 1
            name = f"{base}_{k}"
        self._reserved.update(p + name for p in prefixes)
        return name

    # -- creating ------------------------------------------------------------------------
    def add(
        self,
        name: str,
        op: str,
        inputs: Iterable[str] = (),
        attrs: Mapping[str, AttrValue] | None = None,
        device: str = "",
        colocate_with: Iterable[str] = (),
    ) -> NodeDef:
        refs, data = _ordered(list(inputs))
        node = self.graph.new_node(name=name, op=op, input=refs, device=device)
        for key, value in (attrs or {}).items():
            node.attr[key].CopyFrom(value)
        targets = list(colocate_with)
        if targets:
            names.set_colocation(node, targets)
        known = tuple(targets) if names.COLOCATION_ATTR not in (attrs or {}) else None
        self.graph._insert_many([node], [(refs, data, known, None)])
        return node

    def add_many(self, nodes: list[NodeDef], inputs: list | None = None, link: bool = True) -> None:
        """Add NodeDefs made with `graph.new_node`. `inputs`: per node, None or (refs written,
        how many are data inputs, colocation targets or None, control producers or None): what
        the graph would otherwise parse back. `link`: keep the use index exact now (else it is
        rebuilt when next asked: cheaper for a tower's worth)."""
        self.graph._insert_many(nodes, inputs, link)

    # -- towers ------------------------------------------------------------------------------
    def record_tower(self, name: str, index: int, base: str) -> None:
        """Record node `name` as tower `index`'s node `base` (the tower-`index` counterpart a
        copy of another tower's template reads where the template reads that tower's `base`)."""
        self.graph._record_tower(name, index, base)

    def template(self, members: list[str], index: int, prefix: str, renamed_attrs=()) -> Template:
        """A snapshot of tower `index`'s nodes `members` (named `prefix` + base), to copy."""
        g = self.graph
        nodes = [g.node(n) for n in members]
        return Template(
            nodes,
            index,
            prefix,
            [g.producers(n) for n in members],
            [g.colocation(n) for n in members],
            lambda x: (g.tower_of(x) or (None,))[0] == index,
            renamed_attrs,
        )

    def add_copy(
        self, template: Template, index: int, prefix: str, positions: list[int], devices: list[str]
    ) -> Copy:
        """Tower `index`'s copy of `template`'s members `positions`, named `prefix` + base, on
        `devices`; it reads tower `index`'s counterparts of the template tower's nodes."""
        g = self.graph
        member = template.position
        bases = template.bases

        def rename(x: str) -> str:
            j = member.get(x)
            if j is not None:
                return prefix + bases[j]
            rec = g.tower_of(x)
            if rec is None or rec[0] != template.index:
                return x
            mine = g.tower_node(index, rec[1])
            if mine is None:
                raise InternalError(
                    f"tower {index} has no counterpart of '{x}' for its copy of tower {template.index}"
                )
            return mine

        c = Copy(template, index, prefix, list(positions), list(devices), rename)
        g._add_copy(c)
        return c

    def const(self, name: str, value, dtype, device: str = "", inputs: Iterable[str] = ()) -> NodeDef:
        proto = tensor_util.make_tensor_proto(np.asarray(value), dtype=dtype)
        return self.add(
            name,
            "Const",
            inputs,
            {"dtype": type_attr(proto.dtype), "value": AttrValue(tensor=proto)},
            device,
        )

    # -- changing ------------------------------------------------------------------------
    def set_inputs(self, name: str, inputs: Iterable[str]) -> None:
        node = self.graph._editable(name)
        self.graph._unlink(name)
        refs, data = _ordered(list(inputs))
        del node.input[:]
        node.input.extend(refs)
        self.graph._inputs_written(name, refs, data)
        self.graph._link(name)

    def add_control_inputs(self, name: str, controls: Iterable[str]) -> None:
        node = self.graph.get(name) or self.graph.node(name)
        new = [names.control(c) for c in controls]
        if new:
            self.set_inputs(name, list(node.input) + new)

    def set_device(self, name: str, device: str) -> None:
        self.graph._set_device(name, device)

    def set_shape_attr(self, name: str, key: str, dims: Iterable[int]) -> None:
        """Set node `name`'s TensorShape attr `key` to `dims` (-1 for an unknown dimension); no
        edge changes."""
        shape = self.graph._editable(name).attr[key].shape
        shape.Clear()
        for d in dims:
            shape.dim.add().size = d

    def drop_function_colocation(self) -> list[str]:
        """Remove `_class` colocation from the bodies of the library's functions; the names of
        the functions changed. Inside a function it names body nodes, which TensorFlow does not
        rename when it inlines a call: two calls of one function (a v2 cond per tower) would
        share one colocation group across devices, and a call whose resources sit on several
        devices would colocate ops that cannot share one. Ops on resources still follow them."""
        changed = []
        for f in self.graph.library.function:
            hit = False
            for nd in f.node_def:
                if names.COLOCATION_ATTR in nd.attr:
                    del nd.attr[names.COLOCATION_ATTR]
                    hit = True
            if hit:
                changed.append(f.signature.name)
        return changed

    def set_colocation(self, name: str, targets: Iterable[str]) -> None:
        node = self.graph._editable(name)
        self.graph._unlink(name)
        names.set_colocation(node, list(targets))
        self.graph._link(name)

    def take(self, name: str) -> NodeDef:
        """Remove `name` although it is still read: the caller adds a node of the same name
        that gives the same outputs (a merge, say), so its readers stay as they are."""
        node = self.graph._editable(name)
        self.graph._delete(name)
        return node

    def drop(self, names_: Iterable[str]) -> None:
        """Remove many nodes at once, unchecked: what still reads them must go too, or read a
        node of the same name added later (the final structural check finds any left over)."""
        self.graph._delete_many(list(names_))

    def replace_all_uses(self, old: str, new: str) -> list[str]:
        """Make every reader of tensor `old` ("n" or "n:i") read tensor `new` instead, control
        readers of a node `old` follow node `new`; the readers changed, sorted by name."""
        old_node, new_node = names.node_of(old), names.node_of(new)
        old_ref, new_ref = str(names.parse(old)), str(names.parse(new))
        changed = []
        for user in sorted(set(self.graph.users(old_node))):
            refs = list(self.graph.node(user).input)
            swapped = [
                new_ref if r == old_ref else names.control(new_node) if r == names.control(old_node) else r
                for r in refs
            ]
            if swapped != refs:
                self.set_inputs(user, swapped)
                changed.append(user)
        return changed

    def replace_node(
        self, name: str, op: str, inputs: Iterable[str], attrs=None, device: str = ""
    ) -> NodeDef:
        """Put a new node in the place of node `name`, under the same name: its readers stay as
        they are and read the new node (a merge of tower copies standing for the original, say)."""
        self.take(name)
        return self.add(name, op, inputs, attrs, device)

    def erase(self, name: str) -> None:
        """Remove a node nobody uses; refusing keeps the graph free of dangling inputs."""
        users = self.graph.users(name)
        coloc = self.graph.colocation_users(name)
        if users or coloc:
            raise InternalError(
                f"cannot erase '{name}': still used by {', '.join(sorted(users + coloc)[:3])}"
            )
        self.graph._delete(name)
