"""Static tensor shapes of the input graph: declared by functional ops, or inferred by TensorFlow's
own shape functions over as little of the graph as the question needs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.python.client import pywrap_tf_session as c_api
from tensorflow.python.framework import c_api_util

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
        if not entries:
            return
        for tensor, stub in stubs.items():
            producer, index, _ = names.parse(tensor)
            source = self._node(producer)
            entries.append(
                _placeholder(stub, opdefs.output_types(source)[index], declared_shapes(source)[index])
            )
        tail = GraphDef()
        tail.versions.CopyFrom(self._versions)
        if any(_needs_library(node) for node in entries):
            tail.library.CopyFrom(self._library)
        self._load(serialize_nodes(entries) + tail.SerializeToString())
        self._subset = True

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
        opts = c_api_util.ScopedTFImportGraphDefOptions()
        c_api.TF_ImportGraphDefOptionsSetPrefix(opts.options, "")
        c_api.TF_ImportGraphDefOptionsSetValidateColocationConstraints(opts.options, False)
        try:
            with c_api_util.tf_buffer(self._data if data is None else data) as buf:
                c_api.TF_GraphImportGraphDefWithResults(graph._c_graph, buf, opts.options)  # noqa: SLF001 - TF's C graph
        except Exception as e:  # TensorFlow raises its own status errors here
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InvalidGraphError(f"TensorFlow cannot load the graph: {first}") from None
        self._c_ops = {c_api.TF_OperationName(op): op for op in graph.new_operations()}
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
            op = self._graph._create_op_from_tf_operation(self._c_ops[node])  # noqa: SLF001 - TF's op wrapper
            shape = op.outputs[index].shape
            result = None if shape.rank is None else [d for d in shape.as_list()]
        self._cache[ref] = result
        return result


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
