"""Shape answers: declared by functional ops, inferred over a stubbed subset, or over the whole graph."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

from graphpass.ir.wire import node_entries
from graphpass.shapes import ShapeOracle, declared_shapes


def _functional_graph() -> graph_pb2.GraphDef:
    """A v2 cond and a v2 while loop (If / While ops declaring their shapes), a variant output
    (a TensorList carried by the loop), and ops downstream of both."""
    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        tf1.enable_control_flow_v2()
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        flag = tf1.placeholder(tf.bool, [], name="flag")
        y = tf.cond(flag, lambda: x * 2.0, lambda: x + 1.0, name="branch")
        w = tf.ones([3, 4])
        z = tf.matmul(y, w, name="z")
        tl = tf.raw_ops.EmptyTensorList(element_shape=[3], max_num_elements=-1, element_dtype=tf.float32)
        _, total, tl = tf.while_loop(
            lambda i, s, t: i < 3,
            lambda i, s, t: (
                i + 1,
                s + tf.reduce_sum(z),
                tf.raw_ops.TensorListPushBack(input_handle=t, tensor=x[0]),
            ),
            [tf.constant(0), tf.constant(0.0), tl],
            name="loop",
        )
        tf.identity(total * 2.0, name="out")
        tf.raw_ops.TensorListStack(
            input_handle=tl, element_dtype=tf.float32, element_shape=[3], name="stacked"
        )
    return g.as_graph_def()


def _oracle(graph_def: graph_pb2.GraphDef) -> ShapeOracle:
    return ShapeOracle(
        graph_def.SerializeToString(), [n.name for n in graph_def.node], graph_def.versions, graph_def.library
    )


def test_declared_shapes_are_what_tensorflow_infers():
    graph_def = _functional_graph()
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph_def, name="")
    functional = [n for n in graph_def.node if declared_shapes(n) is not None]
    assert {n.op for n in functional} == {"StatelessIf", "StatelessWhile"}
    for node in functional:
        oracle = _oracle(graph_def)
        for k, out in enumerate(g.get_operation_by_name(node.name).outputs):
            want = None if out.shape.rank is None else out.shape.as_list()
            assert oracle.shape(f"{node.name}:{k}") == want, (node.name, k)


def test_prepared_subset_answers_like_the_whole_graph():
    graph_def = _functional_graph()
    asked = ["z", "out", "stacked"]
    whole, subset = _oracle(graph_def), _oracle(graph_def)
    subset.prepare(asked)
    assert subset._subset  # noqa: SLF001 - a subset was imported, not the graph
    # Declaring nodes stand as placeholders, except where a variant output (the TensorList) is read.
    imported = set(subset._c_ops)  # noqa: SLF001
    assert "z" in imported and "branch" not in imported and "loop" in imported
    for name in asked:
        assert subset.shape(f"{name}:0") == whole.shape(f"{name}:0"), name
    assert subset._subset  # noqa: SLF001 - nothing asked needed the whole graph
    assert subset.shape("z:0") == [None, 4]


def test_node_entries_walk_every_top_level_field():
    graph_def = _functional_graph()
    graph_def.version = 7  # the deprecated varint field
    data = graph_def.SerializeToString()
    spans = node_entries(data)
    assert [node_def_pb2.NodeDef.FromString(data[a:b]).name for a, b in spans] == [
        n.name for n in graph_def.node
    ]
    assert node_entries(data[:-1]) is None  # truncated
