"""Static tensor shapes from TensorFlow's own shape inference, computed once and queried lazily."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.client import pywrap_tf_session as c_api
from tensorflow.python.framework import c_api_util

from .errors import InvalidGraphError
from .ir import names
from .ir.graph import serialize_nodes


class ShapeOracle:
    """Shapes of tensors of one GraphDef.

    Importing into a C++ graph runs TensorFlow's shape functions for every node; Python
    wrappers are made only for the nodes asked about, which keeps this cheap on big graphs.
    `prepare(nodes)` imports only a subset closed under inputs (the ancestors of what will be
    asked), which is cheaper still; asking about anything outside it imports the whole graph.
    """

    def __init__(self, graph_def):
        self._data = graph_def.SerializeToString()  # a snapshot: passes change the graph later
        self._graph = None
        self._subset = False
        self._c_ops: dict[str, object] = {}
        self._cache: dict[str, list[int | None] | None] = {}

    @property
    def source_bytes(self) -> bytes:
        """The serialized input graph (taken before any pass changed it)."""
        return self._data

    def prepare(self, nodes) -> None:
        """Import only the nodes named `nodes`, as they are in the input (every input of each
        must be among them), if nothing is loaded yet."""
        if self._graph is not None:
            return
        keep = set(nodes)
        full = tf.compat.v1.GraphDef.FromString(self._data)
        subset = tf.compat.v1.GraphDef()
        subset.versions.CopyFrom(full.versions)
        subset.library.CopyFrom(full.library)
        # The kept nodes' bytes go in as they are (no message copies).
        data = serialize_nodes(n for n in full.node if n.name in keep) + subset.SerializeToString()
        self._load(data)
        self._subset = True

    def _load(self, data: bytes | None = None) -> None:
        self._subset = False
        graph = tf.Graph()
        opts = c_api_util.ScopedTFImportGraphDefOptions()
        c_api.TF_ImportGraphDefOptionsSetPrefix(opts.options, "")
        c_api.TF_ImportGraphDefOptionsSetValidateColocationConstraints(opts.options, False)
        try:
            with c_api_util.tf_buffer(self._data if data is None else data) as buf:
                c_api.TF_GraphImportGraphDefWithResults(graph._c_graph, buf, opts.options)
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
        if self._graph is None or (self._subset and node not in self._c_ops):
            self._load()
        op = self._graph._create_op_from_tf_operation(self._c_ops[node])
        shape = op.outputs[index].shape
        result = None if shape.rank is None else [d for d in shape.as_list()]
        self._cache[ref] = result
        return result
