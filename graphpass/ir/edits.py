"""Graph's changes: the mutations the Rewriter makes (only it calls them), mixed into Graph."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tensorflow.core.framework import node_def_pb2

from ..errors import InternalError
from .towers import Copy

NodeDef = node_def_pb2.NodeDef


class Edits:
    """Graph's mutations: in place on parsed nodes, a copy's node detached first (see graph.py
    for the state they keep up to date)."""

    def _editable(self, name: str) -> NodeDef:
        """Node `name` to change in place: a copy's node becomes a NodeDef of its own first."""
        node = self._nodes.get(name)
        if node is not None:
            self._changed.add(name)
            return node
        hit = self._virtual(name)
        if hit is None:
            raise InternalError(f"no node named '{name}' in the graph")
        c, k = hit
        if k not in c.detached:
            node = self._made.node.add()
            node.CopyFrom(c.materialize(k))
            c.detached[k] = node
            if self._uses is not None:
                self._uses.link(name, *self.producers(name), self.colocation(name))
        return c.detached[k]

    def _set_device(self, name: str, device: str) -> None:
        hit = None if name in self._nodes else self._virtual(name)
        if hit is not None and hit[1] not in hit[0].detached:
            hit[0].devices[hit[1]] = device
            return
        self._editable(name).device = device

    def _link(self, name: str) -> None:
        if self._uses is not None:
            self._uses.link(name, *self.producers(name), self.colocation(name))

    def _unlink(self, name: str) -> None:
        """Take node `name` out of the use index and forget its parse (its inputs or
        colocation are about to change, or it is going)."""
        if self._uses is not None:
            self._uses.unlink(name, *self.producers(name), self.colocation(name))
        self._forget(name)

    def _forget(self, name: str) -> None:
        self._parsed.pop(name, None)
        self._reads.pop(name, None)
        self._colocated.pop(name, None)

    def _inputs_written(
        self,
        name: str,
        refs: Sequence[str],
        data: int,
        colocation: tuple[str, ...] | None = None,
        ctrl: tuple[str, ...] | None = None,
    ) -> None:
        """Record the parse of node `name`'s inputs from `refs`, the strings just written to it
        (its first `data` ones are the data inputs; `ctrl`: the others' producers, if known), and
        its colocation targets if given: cheaper than reading them back."""
        self._record(name, refs, data, ctrl)
        if colocation is not None:
            self._colocated[name] = colocation

    def _insert_many(
        self, nodes: Iterable[NodeDef], inputs: Iterable | None = None, link: bool = True
    ) -> None:
        """Add nodes. `inputs`: per node, None or (refs, data, colocation, ctrl) as written (see
        _inputs_written). `link`: keep the use index up to date (else it is rebuilt when next
        needed: cheaper for a graph's worth of nodes)."""
        table = self._nodes
        pairs = zip(nodes, inputs, strict=True) if inputs is not None else ((n, None) for n in nodes)
        for node, written in pairs:
            name = node.name
            if name in self:
                raise InternalError(f"a node named '{name}' already exists")
            table[name] = node
            if written is not None:
                self._inputs_written(name, *written)
            if link:
                self._link(name)
        if not link:
            self._uses = None

    def _delete(self, name: str) -> None:
        self._unlink(name)
        if self._nodes.pop(name, None) is None:
            self._remove_from_copy(name)

    def _delete_many(self, names_: Iterable[str]) -> None:
        """Remove many nodes at once; the use index is rebuilt when next needed."""
        for name in names_:
            if self._nodes.pop(name, None) is None:
                self._remove_from_copy(name)
            self._forget(name)
        self._uses = None

    def _remove_from_copy(self, name: str) -> None:
        hit = self._virtual(name)
        if hit is None:
            raise InternalError(f"no node named '{name}' in the graph")
        c, k = hit
        c.detached.pop(k, None)
        c.removed.add(k)

    def _record_tower(self, name: str, index: int, base: str) -> None:
        self._tower[name] = (index, base)
        self._tower_names[(index, base)] = name

    def _add_copy(self, c: Copy) -> None:
        if c.prefix in self._copies or c.index in self._copy_of:
            raise InternalError(f"tower {c.index} has a copy already")
        prefix, bases, nodes = c.prefix, c.template.bases, self._nodes
        clash = next((prefix + bases[j] for j in c.positions if prefix + bases[j] in nodes), None)
        if clash is not None:
            raise InternalError(f"a node named '{clash}' already exists")
        self._copies[c.prefix] = c
        self._copy_of[c.index] = c
