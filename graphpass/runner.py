"""Running GraphDefs in TF1 sessions on K virtual CPU devices (Runner) and random batches to feed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import dtypes

from . import opdefs
from .ir import names

tf1 = tf.compat.v1


def session_config(num_cpus: int):
    """A v1 session config exposing /device:CPU:0..num_cpus-1 with strict placement."""
    return tf1.ConfigProto(device_count={"CPU": num_cpus}, allow_soft_placement=False)


class Runner:
    """One GraphDef imported into its own tf.Graph and Session, with readers for every variable.

    Every run has a deadline: a broken all-reduce (a collective missing one participant) would
    otherwise wait forever.
    """

    def __init__(self, graph_def, num_cpus: int = 1, timeout_s: float = 600.0, target: str = "", config=None):
        self.options = tf1.RunOptions(timeout_in_ms=int(timeout_s * 1000))
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.import_graph_def(graph_def, name="")
            self.readers: dict[str, tf.Tensor] = {}
            for node in graph_def.node:
                if not opdefs.is_variable_op(node.op):
                    continue
                out = self.graph.get_tensor_by_name(node.name + ":0")
                if opdefs.is_resource_variable_op(node.op):
                    with tf1.device(node.device), tf1.name_scope(None):
                        out = tf.raw_ops.ReadVariableOp(
                            resource=out,
                            dtype=dtypes.as_dtype(node.attr["dtype"].type),
                            name=f"graphpass_read/{node.name}",
                        )
                self.readers[node.name] = out
        self._nodes = {n.name: n for n in graph_def.node if opdefs.is_variable_op(n.op)}
        self._loaders: dict[str, tuple] = {}
        self.session = tf1.Session(target, graph=self.graph, config=config or session_config(num_cpus))

    def run(self, fetches, feeds: dict[str, np.ndarray] | None = None):
        feed_dict = {
            self.graph.get_tensor_by_name(names.tensor(*names.parse(k)[:2]) + ":0" if ":" not in k else k): v
            for k, v in (feeds or {}).items()
        }
        return self.session.run(fetches, feed_dict=feed_dict, options=self.options)

    def variables(self, which: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        keys = list(self.readers) if which is None else list(which)
        values = self.session.run([self.readers[k] for k in keys], options=self.options)
        return dict(zip(keys, values, strict=True))

    def load(self, values: dict[str, np.ndarray]) -> None:
        """Set variables to `values` (by name), through assign ops made on first use."""
        feeds, ops = {}, []
        for name, value in values.items():
            if name not in self._loaders:
                node = self._nodes[name]
                dtype = dtypes.as_dtype(opdefs.dtype_attr(node, "dtype"))
                with self.graph.as_default(), tf1.device(node.device), tf1.name_scope(None):
                    fed = tf1.placeholder(dtype, name=f"graphpass_load/{name}/value")
                    var = self.graph.get_tensor_by_name(name + ":0")
                    if opdefs.is_resource_variable_op(node.op):
                        op = tf.raw_ops.AssignVariableOp(
                            resource=var, value=fed, name=f"graphpass_load/{name}"
                        )
                    else:
                        op = tf1.assign(var, fed, validate_shape=False, name=f"graphpass_load/{name}").op
                self._loaders[name] = (fed, op)
            fed, op = self._loaders[name]
            feeds[fed] = value
            ops.append(op)
        self.session.run(ops, feed_dict=feeds, options=self.options)

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def random_batches(
    feeds: dict[str, dict],
    batch: int,
    steps: int,
    seed: int = 0,
    int_high: Callable[[str], int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """`steps` random global batches for feeds given as {name: {shape, dtype, classes}}."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        batch_feeds = {}
        for name, spec in feeds.items():
            shape = [batch if d is None or d < 0 else d for d in spec["shape"]]
            dtype = np.dtype(spec["dtype"])
            if dtype == np.bool_:
                batch_feeds[name] = rng.integers(0, 2, size=shape).astype(dtype)
            elif np.issubdtype(dtype, np.integer):
                high = spec.get("classes") or (int_high(name) if int_high else 2)
                batch_feeds[name] = rng.integers(0, high, size=shape).astype(dtype)
            else:
                batch_feeds[name] = rng.standard_normal(shape).astype(dtype)
        out.append(batch_feeds)
    return out
