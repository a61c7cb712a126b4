"""Static tensor shapes of the input graph: declared by functional ops, or inferred by TensorFlow's
own shape functions over as little of the graph as the question needs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.python.client import pywrap_tf_session as c_api
from tensorflow.python.framework import c_api_util
from tensorflow.python.framework import ops as tf_ops

from . import opdefs
from .errors import InternalError, InvalidGraphError
from .ir import names
from .ir.graph import GraphDef, NodeDef
from .ir.wire import node_entries, serialize_nodes

# Ops whose TensorFlow shape function gives their `output_shapes` attribute, when it is set.
DECLARING_OPS = frozenset({"If", "StatelessIf", "While", "StatelessWhile"})
# A placeholder standing in for an output of these types would lose its handle data.
OPAQUE_TYPES = frozenset({types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT})
STUB_SCOPE = "graphpass_declared_shape"
NEXT_OPS = ("NextIteration", "RefNextIteration")


def declared_shapes(node: NodeDef) -> list | None:
    """The shape protos of `node`'s outputs if its op declares them (as TensorFlow's shape
    function reads them), else None."""
    if node.op not in DECLARING_OPS or "output_shapes" not in node.attr:
        return None
    protos = list(node.attr["output_shapes"].list.shape)
    return protos if protos and len(protos) == len(opdefs.output_types(node)) else None


def _dims(proto) -> list[int | None] | None:
    return None if proto.unknown_rank else [d.size if d.size >= 0 else None for d in proto.dim]


def _needs_library(node: NodeDef) -> bool:
    if not opdefs.is_registered(node.op):
        return True  # a call of a library function by name
    return any(v.WhichOneof("value") == "func" or len(v.list.func) for v in node.attr.values())


class ShapeOracle:
    """Shapes of tensors of one input graph, read from a snapshot of its bytes (passes change the
    graph afterwards), computed once each.

    A declaring node's shapes come from its attribute. Others come from importing into a C++
    graph, which runs TensorFlow's shape functions; Python wrappers are made only for the nodes
    asked about. `prepare(nodes)` imports only what those nodes' shapes depend on: their
    ancestors over data edges, where each declaring node met on the way stands as placeholders
    of its declared shapes (so the function library stays out when nothing else calls it).
    Asking about a node outside that imports the whole graph.
    """

    def __init__(self, data: bytes, order: Sequence[str], versions, library):
        """`data`: the serialized input graph; `order`: its node names in order; `versions` and
        `library`: its own (read, never changed, by passes)."""
        self._data = data
        self._order = order
        self._versions, self._library = versions, library
        self._nodes: dict[str, NodeDef] | None = None  # parsed lazily, by name
        self._entries: dict[str, tuple[int, int]] | None = None
        self._graph = None
        self._subset = False
        self._c_ops: dict[str, object] = {}
        self._cache: dict[str, list[int | None] | None] = {}

    def close(self) -> None:
        """Let go of the input's bytes and the imported graph (no shapes are asked after this)."""
        if self._graph is not None:
            tf_ops.dismantle_graph(self._graph)  # it and its op wrappers hold each other
        self._data = b""
        self._order = ()
        self._nodes, self._entries, self._graph = {}, {}, None
        self._versions = self._library = None
        self._c_ops.clear()

    @property
    def source_bytes(self) -> bytes:
        """The serialized input graph (taken before any pass changed it)."""
        return self._data

    def _node(self, name: str) -> NodeDef:
        if self._entries is None and self._nodes is None:
            spans = node_entries(self._data)
            if spans is not None and len(spans) == len(self._order):
                self._entries = dict(zip(self._order, spans, strict=True))
                self._nodes = {}
            else:
                self._nodes = {n.name: n for n in GraphDef.FromString(self._data).node}
        node = self._nodes.get(name)
        if node is None:
            span = self._entries.get(name) if self._entries is not None else None
            if span is None:
                raise InternalError(f"no node named '{name}' in the input graph")
            node = self._nodes[name] = NodeDef.FromString(self._data[span[0] : span[1]])
        return node

    def _stub_for(self, producer: str, index: int) -> bool:
        """Whether output `index` of `producer` can stand as a placeholder of its declared shape."""
        node = self._node(producer)
        declared = declared_shapes(node)
        return declared is not None and opdefs.output_types(node)[index] not in OPAQUE_TYPES

    def prepare(self, nodes: Iterable[str]) -> None:
        """Import what the shapes of the outputs of `nodes` depend on, if nothing is loaded yet."""
        if self._graph is not None:
            return
        entries = self._closure(nodes)
        if entries:
            self._load(self._subset_bytes(entries))
            self._subset = True

    def _closure(self, nodes: Iterable[str]) -> list[NodeDef]:
        """The nodes the shapes of `nodes`' outputs depend on (data edges), declaring nodes met on
        the way replaced by placeholders of their declared shapes, control inputs dropped."""
        stubs: dict[str, str] = {}  # tensor -> the placeholder standing for it
        taken = set(self._order)
        entries = []
        seen: set[str] = set()
        stack = [n for n in nodes if declared_shapes(self._node(n)) is None]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            node = self._node(n)
            refs = [ref for ref in node.input if ref[:1] != "^"]
            inputs = []
            for ref in refs:
                producer, index, _ = names.parse(ref)
                if self._stub_for(producer, index):
                    ref = stubs.get(names.tensor(producer, index)) or self._add_stub(
                        producer, index, stubs, taken
                    )
                else:
                    stack.append(producer)
                inputs.append(ref)
            # Control inputs go: their producers are not imported, and shapes do not depend on them.
            entries.append(node if inputs == list(node.input) else _with_inputs(node, inputs))
        for tensor, stub in stubs.items():
            producer, index, _ = names.parse(tensor)
            source = self._node(producer)
            entries.append(
                _placeholder(stub, opdefs.output_types(source)[index], declared_shapes(source)[index])
            )
        return entries

    def _subset_bytes(self, entries: list[NodeDef]) -> bytes:
        tail = GraphDef()
        tail.versions.CopyFrom(self._versions)
        if any(_needs_library(node) for node in entries):
            tail.library.CopyFrom(self._library)
        return serialize_nodes(entries) + tail.SerializeToString()

    def prober(self, nodes: Iterable[str], replaced: Iterable[str]) -> Prober:
        """A Prober of the outputs of `nodes` in variants of the input where the nodes named in
        `replaced` are replaced (module docstring of Prober)."""
        nodes, replaced = list(nodes), set(replaced)
        entries = [self._first_iteration(node) for node in self._closure(nodes + sorted(replaced))]
        kept = [node for node in entries if node.name not in replaced]
        return Prober(self._subset_bytes(kept), nodes)

    def _first_iteration(self, node: NodeDef) -> NodeDef:
        """A v1 loop's nodes as its first iteration shapes them: Enter's shape function forgets
        its input's shape (a loop variable may change it), and TensorFlow imports a Merge before
        the NextIteration that feeds it back, so an Enter stands as an Identity and a Merge
        loses its back edges."""
        if node.op in ("Enter", "RefEnter"):
            out = NodeDef(name=node.name, op="Identity" if node.op == "Enter" else "RefIdentity")
            out.input.extend(node.input)
            out.attr["T"].CopyFrom(node.attr["T"])
            return out
        if node.op not in ("Merge", "RefMerge"):
            return node
        keep = [r for r in node.input if r[:1] == "^" or self._node(names.node_of(r)).op not in NEXT_OPS]
        if len(keep) == len(node.input) or not keep:
            return node
        out = _with_inputs(node, keep)
        out.attr["N"].i = sum(1 for r in keep if r[:1] != "^")
        return out

    def _add_stub(self, producer: str, index: int, stubs: dict[str, str], taken: set[str]) -> str:
        stub = f"{STUB_SCOPE}/{producer}/{index}"
        while stub in taken:
            stub += "_"
        taken.add(stub)
        stubs[names.tensor(producer, index)] = stub
        return stub

    def _load(self, data: bytes | None = None) -> None:
        self._subset = False
        graph = tf.Graph()
        self._c_ops = _import(graph, self._data if data is None else data)
        self._graph = graph

    def shape(self, ref: str) -> list[int | None] | None:
        """Dims of tensor `ref` (None for an unknown dim), or None if even the rank is unknown."""
        if ref in self._cache:
            return self._cache[ref]
        node, index, _ = names.parse(ref)
        declared = declared_shapes(self._node(node))
        if declared is not None:
            result = _dims(declared[index])
        else:
            if self._graph is None or (self._subset and node not in self._c_ops):
                self._load()
            result = _output_dims(self._graph, self._c_ops[node])[index]
        self._cache[ref] = result
        return result


class Prober:
    """TensorFlow's shape inference on variants of (part of) the input: the nodes it depends on
    serialized once, each variant adding the nodes that stand in for the replaced ones (a
    placeholder of another shape, a constant), imported on its own (an oracle's graph is not
    touched). v1 loops are shaped as in their first iteration (ShapeOracle._first_iteration)."""

    def __init__(self, base: bytes, nodes: list[str]):
        self._base, self._nodes = base, nodes

    def shapes(self, replace: Iterable[NodeDef], nodes: Iterable[str] | None = None) -> dict:
        """Dims of every output of `nodes` (default: the prober's), by tensor name, as
        ShapeOracle.shape gives them, with `replace` standing in for the replaced nodes.

        Raises:
            InvalidGraphError: TensorFlow's shape inference refuses the variant (its message).
        """
        probe = self.run(replace)
        try:
            return probe.shapes(self._nodes if nodes is None else nodes)
        finally:
            probe.close()

    def run(self, replace: Iterable[NodeDef]) -> Probe:
        """The variant with `replace` standing in for the replaced nodes, imported, to read
        shapes from (Probe.shapes) until it is closed.

        Raises:
            InvalidGraphError: TensorFlow's shape inference refuses the variant (its message).
        """
        graph = tf.Graph()
        return Probe(graph, _import(graph, self._base + serialize_nodes(list(replace))))


class Probe:
    """One imported variant of a Prober's graph: shapes read on demand, each node once."""

    def __init__(self, graph, ops: dict):
        self._graph, self._ops = graph, ops
        self._read: dict[str, list | None] = {}
        self._done: set[str] = set()

    def shapes(self, nodes: Iterable[str]) -> dict:
        """Dims of every output of `nodes` (by tensor name), with those read before."""
        for n in nodes:
            c_op = self._ops.get(n)
            if c_op is None or n in self._done:
                continue  # a declaring node (its shapes do not change), or read already
            self._done.add(n)
            for i, dims in enumerate(_output_dims(self._graph, c_op)):
                self._read[names.tensor(n, i)] = dims
        return self._read

    def close(self) -> None:
        """Free the imported graph now: it and its op wrappers hold each other, so the cycle
        collection (paused during a rewrite) would keep every probe alive until it ran."""
        if self._graph is not None:
            self._ops = {}
            tf_ops.dismantle_graph(self._graph)
            self._graph = None


def _output_dims(graph, c_op) -> list[list[int | None] | None]:
    """The inferred dims of each output of `c_op`, an operation of TensorFlow graph `graph` (None
    where even the rank is unknown), read through the Python op wrapper TensorFlow makes for it."""
    op = graph._create_op_from_tf_operation(c_op)  # noqa: SLF001 - TF's op wrapper, made on demand
    return [None if t.shape.rank is None else t.shape.as_list() for t in op.outputs]


def _import(graph, data: bytes) -> dict[str, object]:
    """Import serialized GraphDef `data` into `graph` through the C API (shape inference runs,
    no Python op wrappers are made); its operations by name."""
    opts = c_api_util.ScopedTFImportGraphDefOptions()
    c_api.TF_ImportGraphDefOptionsSetPrefix(opts.options, "")
    c_api.TF_ImportGraphDefOptionsSetValidateColocationConstraints(opts.options, False)
    try:
        with c_api_util.tf_buffer(data) as buf:
            c_api.TF_GraphImportGraphDefWithResults(graph._c_graph, buf, opts.options)  # noqa: SLF001 - TF's C graph
    except Exception as e:  # TensorFlow raises its own status errors here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidGraphError(f"TensorFlow cannot load the graph: {first}") from None
    return {c_api.TF_OperationName(op): op for op in graph.new_operations()}


def _with_inputs(node: NodeDef, inputs: list[str]) -> NodeDef:
    out = NodeDef()
    out.CopyFrom(node)
    del out.input[:]
    out.input.extend(inputs)
    return out


def _placeholder(name: str, dtype: int, shape) -> NodeDef:
    node = NodeDef(name=name, op="Placeholder")
    node.attr["dtype"].type = dtype
    node.attr["shape"].shape.CopyFrom(shape)
    return node
