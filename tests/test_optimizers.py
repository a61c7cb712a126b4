"""Every TF1 optimizer, on dense and sparse (embedding) gradients, trains exactly when rewritten,
as built and re-imported under a prefix (where most of them trained wrong with exit 0 when the
gradients were found by their scope's name alone)."""

from __future__ import annotations

import numpy as np
import pytest

import graphpass

from .conftest import assert_trains_like, prefixed

OPTIMIZERS = {
    "sgd": lambda o: o.GradientDescentOptimizer(0.1),
    "momentum": lambda o: o.MomentumOptimizer(0.05, 0.9),
    "nesterov": lambda o: o.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
    "adagrad": lambda o: o.AdagradOptimizer(0.1),
    "adagrad_da": lambda o: o.AdagradDAOptimizer(0.1, global_step=_step()),
    "adadelta": lambda o: o.AdadeltaOptimizer(1.0),
    "adam": lambda o: o.AdamOptimizer(0.01),
    "ftrl": lambda o: o.FtrlOptimizer(0.1, l1_regularization_strength=0.001),
    "proximal_adagrad": lambda o: o.ProximalAdagradOptimizer(0.1, l1_regularization_strength=0.001),
    "proximal_sgd": lambda o: o.ProximalGradientDescentOptimizer(0.1, l2_regularization_strength=0.01),
    "rmsprop_centered": lambda o: o.RMSPropOptimizer(0.01, centered=True),
}
FAST = ("adam", "ftrl")


def _step():
    import tensorflow as tf

    return tf.compat.v1.train.get_or_create_global_step()


class _Model:
    """A small graph built on the fly: ids -> embedding (sparse gradient) -> dense -> softmax loss."""

    def __init__(self, optimizer: str, prefix: str):
        import tensorflow as tf

        tf1 = tf.compat.v1
        g = tf.Graph()
        with g.as_default():
            tf1.set_random_seed(7)
            ids = tf1.placeholder(tf.int32, [None, 3], name="ids")
            y = tf1.placeholder(tf.int64, [None], name="y")
            table = tf1.get_variable("embedding", [12, 6], use_resource=True)
            h = tf.reduce_mean(tf.nn.embedding_lookup(table, ids), axis=1)
            w = tf1.get_variable("dense/kernel", [6, 4], use_resource=True)
            b = tf1.get_variable("dense/bias", [4], initializer=tf1.zeros_initializer(), use_resource=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.matmul(h, w) + b),
                name="loss",
            )
            opt = OPTIMIZERS[optimizer](tf1.train)
            opt.minimize(loss, global_step=_step(), name="train")
            tf1.global_variables_initializer()
        self.graph_def = prefixed(g.as_graph_def(), prefix)
        self.train_op, self.init_op = prefix + "train", prefix + "init"
        self.prefix = prefix

    def batches(self, batch: int, steps: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        return [
            {
                self.prefix + "ids": rng.integers(0, 12, (batch, 3)).astype(np.int32),
                self.prefix + "y": rng.integers(0, 4, batch).astype(np.int64),
            }
            for _ in range(steps)
        ]


def _cases():
    for name in OPTIMIZERS:
        for prefix in ("", "import/"):
            for rules in ("replicated-collective", "ps-least-loaded"):
                fast = name in FAST and prefix and rules == "replicated-collective"
                yield pytest.param(name, prefix, rules, marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("optimizer,prefix,rules", list(_cases()))
def test_optimizer_trains_exactly(optimizer, prefix, rules):
    model = _Model(optimizer, prefix)
    k = 2
    out = graphpass.rewrite(model.graph_def, devices=k, rules=rules, device_type="CPU", verify_each=True)
    assert_trains_like(model, out, k, model.batches(2 * k, 3, seed=1))
