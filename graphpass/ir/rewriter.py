"""Rewriter: the one way passes change a Graph; it keeps the use index exact and names unique."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.framework import tensor_util

from ..errors import InternalError
from . import names
from .graph import Graph, NodeDef

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
        self.graph._insert(node, refs, data, known)
        return node

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
        self.graph._check_changeable([name])
        node = self.graph.node(name)
        self.graph._unlink(name)
        refs, data = _ordered(list(inputs))
        del node.input[:]
        node.input.extend(refs)
        self.graph._inputs_written(name, refs, data)
        self.graph._link(name)

    def add_control_inputs(self, name: str, controls: Iterable[str]) -> None:
        node = self.graph.node(name)
        new = [names.control(c) for c in controls]
        if new:
            self.set_inputs(name, list(node.input) + new)

    def set_device(self, name: str, device: str) -> None:
        self.graph.node(name).device = device

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
        self.graph._check_changeable([name])
        node = self.graph.node(name)
        self.graph._unlink(name)
        names.set_colocation(node, list(targets))
        self.graph._link(name)

    def take(self, name: str) -> NodeDef:
        """Remove `name` although it is still read: the caller adds a node of the same name
        that gives the same outputs (a merge, say), so its readers stay as they are."""
        self.graph._check_changeable([name])
        node = self.graph.node(name)
        self.graph._delete(name)
        return node

    def drop(self, names_: Iterable[str]) -> None:
        """Remove many nodes at once, unchecked: what still reads them must go too, or read a
        node of the same name added later (the final structural check finds any left over)."""
        names_ = list(names_)
        self.graph._check_changeable(names_)
        self.graph._delete_many(names_)

    def erase(self, name: str) -> None:
        """Remove a node nobody uses; refusing keeps the graph free of dangling inputs."""
        self.graph._check_changeable([name])
        users = self.graph.users(name)
        coloc = self.graph.colocation_users(name)
        if users or coloc:
            raise InternalError(
                f"cannot erase '{name}': still used by {', '.join(sorted(users + coloc)[:3])}"
            )
        self.graph._delete(name)
