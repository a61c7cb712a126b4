"""Build the single-tower training graphs the tests and examples use, from real TF1 model code.

    python tools/make_fixtures.py            # writes tests/fixtures/*.pb + *.json, examples/mlp.pb

Each fixture is a GraphDef plus a JSON sidecar naming its feeds (shape, dtype, value range),
train op, loss and init op, so tests can feed random global batches without rebuilding models.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1 layers and RNN cells come from tf_keras

import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


def _dense(x, units, name, activation=None):
    with tf1.variable_scope(name):
        w = tf1.get_variable("kernel", [x.shape[-1], units], initializer=tf1.glorot_uniform_initializer())
        b = tf1.get_variable("bias", [units], initializer=tf1.constant_initializer(0.01))
        y = tf.matmul(x, w) + b
        return activation(y) if activation else y


def _xent(logits, labels):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss"
    )


def mlp_sgd():
    """Two dense layers on ref variables, plain SGD, no global step."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 16], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    h = _dense(x, 32, "hidden", tf.nn.relu)
    logits = _dense(h, 5, "logits")
    loss = _xent(logits, y)
    tf.identity(tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32)), name="accuracy")
    train = tf1.train.GradientDescentOptimizer(0.5).minimize(loss, name="train")
    return {"x": ([None, 16], "float32", None), "y": ([None], "int64", 5)}, train, loss


def conv_momentum():
    """Conv net on resource variables with Momentum and a global step."""
    tf1.enable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 8, 8, 3], name="images")
    y = tf1.placeholder(tf.int32, [None], name="labels")
    with tf1.variable_scope("conv1"):
        k = tf1.get_variable("kernel", [3, 3, 3, 8], initializer=tf1.glorot_uniform_initializer())
        b = tf1.get_variable("bias", [8], initializer=tf1.zeros_initializer())
        c = tf.nn.relu(tf.nn.conv2d(x, k, strides=1, padding="SAME") + b)
    with tf1.variable_scope("conv2"):
        k2 = tf1.get_variable("kernel", [3, 3, 8, 8], initializer=tf1.glorot_uniform_initializer())
        c = tf.nn.relu(tf.nn.conv2d(c, k2, strides=2, padding="SAME"))
    flat = tf.reshape(c, [-1, 4 * 4 * 8])
    logits = _dense(flat, 4, "logits")
    loss = _xent(logits, tf.cast(y, tf.int64))
    step = tf1.train.get_or_create_global_step()
    train = tf1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step, name="train")
    return {"images": ([None, 8, 8, 3], "float32", None), "labels": ([None], "int32", 4)}, train, loss


def mlp_adam():
    """Ref variables with Adam (slots and beta-power accumulators) and a global step."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 12], name="features")
    t = tf1.placeholder(tf.float32, [None, 3], name="targets")
    h = _dense(x, 24, "layer1", tf.nn.tanh)
    out = _dense(h, 3, "layer2")
    loss = tf.reduce_mean(tf.square(out - t), name="loss")
    step = tf1.train.get_or_create_global_step()
    train = tf1.train.AdamOptimizer(0.01).minimize(loss, global_step=step, name="train")
    return {"features": ([None, 12], "float32", None), "targets": ([None, 3], "float32", None)}, train, loss


def mlp_clip():
    """Resource variables, gradients clipped by global norm (clip active) before Adam."""
    tf1.enable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 10], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    h = _dense(x, 16, "fc1", tf.nn.relu)
    logits = _dense(h, 6, "fc2")
    loss = _xent(logits, y) * 50.0  # large gradients, so the clip is active
    opt = tf1.train.AdamOptimizer(0.01)
    grads_and_vars = opt.compute_gradients(loss)
    grads, tvars = zip(*grads_and_vars, strict=False)
    clipped, _ = tf.clip_by_global_norm(grads, 1.0)
    step = tf1.train.get_or_create_global_step()
    train = opt.apply_gradients(zip(clipped, tvars, strict=False), global_step=step, name="train")
    return {"x": ([None, 10], "float32", None), "y": ([None], "int64", 6)}, train, loss


def mlp_wide():
    """Layers of known, uneven sizes (SGD, no slots): the placement tests' model.

    float32 bytes in graph order: 4096, 256, 8192, 128, 8192, 256, 2048, 32.
    """
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 16], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    h = _dense(x, 64, "l1", tf.nn.relu)
    h = _dense(h, 32, "l2", tf.nn.relu)
    h = _dense(h, 64, "l3", tf.nn.relu)
    loss = _xent(_dense(h, 8, "l4"), y)
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    return {"x": ([None, 16], "float32", None), "y": ([None], "int64", 8)}, train, loss


def mixed_dtypes():
    """float32 and float64 weights, and one variable of unknown shape (pack-gradients' edge cases)."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 8], name="x")
    t = tf1.placeholder(tf.float32, [None, 4], name="t")
    w32 = tf1.get_variable("w32", [8, 4], initializer=tf1.glorot_uniform_initializer())
    w64 = tf1.get_variable("w64", [8, 4], tf.float64, initializer=tf1.glorot_uniform_initializer())
    free = tf1.Variable(tf.zeros([4]), validate_shape=False, name="free")
    y = tf.matmul(x, w32) + tf.cast(tf.matmul(tf.cast(x, tf.float64), w64), tf.float32) + free
    loss = tf.reduce_mean(tf.square(y - t), name="loss")
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    return {"x": ([None, 8], "float32", None), "t": ([None, 4], "float32", None)}, train, loss


def lstm_v1():
    """dynamic_rnn over an LSTM cell with v1 control flow (Enter/Exit/Merge/Switch, stacks)."""
    tf1.disable_resource_variables()
    tf1.disable_control_flow_v2()
    x = tf1.placeholder(tf.float32, [None, 5, 4], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    out, _ = tf1.nn.dynamic_rnn(tf1.nn.rnn_cell.LSTMCell(8), x, dtype=tf.float32)
    loss = _xent(_dense(out[:, -1], 3, "head"), y)
    train = tf1.train.AdamOptimizer(0.01).minimize(loss, name="train")
    return {"x": ([None, 5, 4], "float32", None), "y": ([None], "int64", 3)}, train, loss


def lstm_v2():
    """The same LSTM with functional control flow (While with library functions), resource
    variables and Momentum."""
    tf1.enable_resource_variables()
    tf1.enable_control_flow_v2()
    x = tf1.placeholder(tf.float32, [None, 5, 4], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    out, _ = tf1.nn.dynamic_rnn(tf1.nn.rnn_cell.LSTMCell(8), x, dtype=tf.float32)
    loss = _xent(_dense(out[:, -1], 3, "head"), y)
    step = tf1.train.get_or_create_global_step()
    train = tf1.train.MomentumOptimizer(0.05, 0.9).minimize(loss, global_step=step, name="train")
    return {"x": ([None, 5, 4], "float32", None), "y": ([None], "int64", 3)}, train, loss


def _embedding_model(optimizer, resource: bool):
    (tf1.enable_resource_variables if resource else tf1.disable_resource_variables)()
    ids = tf1.placeholder(tf.int32, [None, 3], name="ids")
    y = tf1.placeholder(tf.int64, [None], name="y")
    table = tf1.get_variable("embedding", [12, 5], initializer=tf1.random_normal_initializer())
    bag = tf.reduce_mean(tf.nn.embedding_lookup(table, ids), axis=1)
    loss = _xent(_dense(bag, 4, "head"), y)
    train = optimizer.minimize(loss, name="train")
    return {"ids": ([None, 3], "int32", 12), "y": ([None], "int64", 4)}, train, loss


def embedding_sgd():
    """Sparse gradients on a ref variable: SGD lowers them to ScatterSub."""
    return _embedding_model(tf1.train.GradientDescentOptimizer(0.5), resource=False)


def embedding_adagrad():
    """Sparse gradients on a resource variable: de-duplicated, then ResourceSparseApplyAdagrad."""
    return _embedding_model(tf1.train.AdagradOptimizer(0.5), resource=True)


def embedding_adam():
    """Sparse Adam on ref variables: ScatterAdd into the slots, then a dense AssignSub."""
    return _embedding_model(tf1.train.AdamOptimizer(0.05), resource=False)


def batchnorm():
    """tf.compat.v1 batch normalization: moving statistics updated by UPDATE_OPS before the step."""
    tf1.enable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    h = tf1.layers.batch_normalization(x * 3.0 + 1.0, training=True, momentum=0.5, name="bn_in")
    h = tf1.layers.batch_normalization(_dense(h, 8, "fc", tf.nn.relu), training=True, name="bn_fc")
    loss = _xent(_dense(h, 3, "head"), y)
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
        train = tf1.train.MomentumOptimizer(0.05, 0.9).minimize(loss, name="train")
    return {"x": ([None, 6], "float32", None), "y": ([None], "int64", 3)}, train, loss


def saver_mlp():
    """An MLP with a tf.compat.v1.train.Saver: save/restore ops live in the graph."""
    tf1.enable_resource_variables()
    feeds, train, loss = mlp_adam_body()
    saver = tf1.train.Saver()
    return (
        feeds,
        train,
        loss,
        {
            "saver": {
                "filename": saver.saver_def.filename_tensor_name,
                "save": saver.saver_def.save_tensor_name,
                "restore": saver.saver_def.restore_op_name,
            }
        },
    )


def mlp_adam_body():
    x = tf1.placeholder(tf.float32, [None, 12], name="features")
    t = tf1.placeholder(tf.float32, [None, 3], name="targets")
    out = _dense(_dense(x, 24, "layer1", tf.nn.tanh), 3, "layer2")
    loss = tf.reduce_mean(tf.square(out - t), name="loss")
    step = tf1.train.get_or_create_global_step()
    train = tf1.train.AdamOptimizer(0.01).minimize(loss, global_step=step, name="train")
    return {"features": ([None, 12], "float32", None), "targets": ([None, 3], "float32", None)}, train, loss


def two_optimizers():
    """Two optimizers on two parts of the model in one train op, and a frozen variable.

    Resource variables: with ref variables one optimizer's in-place update races the other's
    backward reads, and the single-tower graph is not even deterministic.
    """
    tf1.enable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 10], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    scale = tf1.get_variable("frozen_scale", [10], initializer=tf1.constant_initializer(0.5), trainable=False)
    h = _dense(x * scale, 16, "body", tf.nn.relu)
    loss = _xent(_dense(h, 4, "head"), y)
    body = tf1.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, "body")
    head = tf1.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, "head")
    step = tf1.train.get_or_create_global_step()
    # One backward pass, two optimizers: two minimize() calls would race (one's update against
    # the other's backward reads) in the single-tower graph already.
    grads = tf1.gradients(loss, body + head)
    train = tf.group(
        tf1.train.AdamOptimizer(0.01).apply_gradients(zip(grads[:2], body, strict=True), name="adam"),
        tf1.train.MomentumOptimizer(0.1, 0.9).apply_gradients(
            zip(grads[2:], head, strict=True), global_step=step, name="mom"
        ),
        name="train",
    )
    return {"x": ([None, 10], "float32", None), "y": ([None], "int64", 4)}, train, loss


def iterator_mlp():
    """Input from tf.data: each tower's IteratorGetNext draws its own batch."""
    tf1.disable_resource_variables()
    import numpy as np

    rng = np.random.default_rng(0)
    features = rng.standard_normal((64, 8)).astype("float32")
    labels = rng.integers(0, 3, 64).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(4)
    x, y = tf1.data.make_one_shot_iterator(ds).get_next(name="batch")
    loss = _xent(_dense(_dense(x, 16, "fc", tf.nn.relu), 3, "head"), y)
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    return {}, train, loss


def keras_resnet50(size: int = 32, classes: int = 10):
    """tf_keras's ResNet50 (weights=None) in graph mode, trained with a TF1 optimizer; its
    BatchNorm updates are control dependencies of the train op. Too big to commit (7 MB):
    tests build it with build("keras_resnet50")."""
    import tf_keras

    tf1.enable_resource_variables()
    tf_keras.backend.set_learning_phase(1)  # BatchNorm in training mode: batch statistics, updates
    images = tf1.placeholder(tf.float32, [None, size, size, 3], name="images")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    model = tf_keras.applications.ResNet50(weights=None, input_tensor=images, classes=classes)
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=model.output), name="loss"
    )
    step = tf1.train.get_or_create_global_step()
    with tf.control_dependencies(model.updates):
        train = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(loss, global_step=step, name="train")
    return (
        {"images": ([None, size, size, 3], "float32", None), "labels": ([None], "int32", classes)},
        train,
        loss,
    )


def inference_mlp():
    """A forward pass only on ref variables: no loss, no optimizer (graphpass must refuse it)."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 16], name="x")
    logits = _dense(_dense(x, 8, "hidden", tf.nn.relu), 3, "logits")
    probs = tf.nn.softmax(logits, name="probs")
    return {"x": ([None, 16], "float32", None)}, probs, probs


def _mlp_body(x, sizes, prefix="mlp"):
    h = x
    for i, units in enumerate(sizes):
        h = _dense(h, units, f"{prefix}/d{i}", tf.nn.relu if i + 1 < len(sizes) else None)
    return h


def _loss_scale(control_flow_v2: bool):
    """Dynamic loss scaling, the TF1 fp16 recipe (fp32 here): gradients of loss * scale divided by
    scale; the optimizer applies them under tf.cond(all finite); the scale halves after a step with
    non-finite gradients and doubles after two good steps (a counter of good steps)."""
    tf1.enable_resource_variables()
    (tf1.enable_control_flow_v2 if control_flow_v2 else tf1.disable_control_flow_v2)()
    x = tf1.placeholder(tf.float32, [None, 12], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    loss = _xent(_mlp_body(x, [16, 4]), y)
    scale = tf1.get_variable("loss_scale", [], initializer=tf1.constant_initializer(1024.0), trainable=False)
    good = tf1.get_variable("good_steps", [], tf.int32, initializer=tf1.zeros_initializer(), trainable=False)
    tvars = tf1.trainable_variables()
    grads = [g / scale for g in tf1.gradients(loss * scale, tvars)]
    finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads]), name="all_finite")
    step = tf1.train.get_or_create_global_step()
    opt = tf1.train.MomentumOptimizer(0.05, 0.9)

    def apply():
        return tf.group(opt.apply_gradients(zip(grads, tvars, strict=True), global_step=step))

    applied = tf.cond(finite, apply, tf.no_op, name="apply_if_finite")
    with tf.control_dependencies([applied]):
        good_next = tf.where(finite, good + 1, tf.zeros_like(good))
        grow = tf.logical_and(finite, good_next >= 2)
        new_scale = tf.where(finite, tf.where(grow, scale * 2.0, scale), scale * 0.5)
        update_scale = scale.assign(new_scale)
        update_good = good.assign(tf.where(grow, tf.zeros_like(good), good_next))
    train = tf.group(applied, update_scale, update_good, name="train")
    return {"x": ([None, 12], "float32", None), "y": ([None], "int64", 4)}, train, loss


def loss_scale_v1():
    """Dynamic loss scaling with v1 control flow (Switch/Merge around the apply ops)."""
    return _loss_scale(False)


def loss_scale_v2():
    """Dynamic loss scaling with v2 control flow (the apply ops inside an If's branch function)."""
    return _loss_scale(True)


def _accumulate(control_flow_v2: bool, every: int):
    """Gradient accumulation in variables: each step adds the gradients to accumulators; every
    `every`-th step applies their mean with Adam and zeroes them, inside tf.cond."""
    tf1.enable_resource_variables()
    (tf1.enable_control_flow_v2 if control_flow_v2 else tf1.disable_control_flow_v2)()
    x = tf1.placeholder(tf.float32, [None, 10], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    loss = _xent(_mlp_body(x, [16, 3]), y)
    tvars = tf1.trainable_variables()
    accums = [
        tf1.get_variable(v.op.name + "/accum", v.shape, initializer=tf1.zeros_initializer(), trainable=False)
        for v in tvars
    ]
    count = tf1.get_variable(
        "accum_count", [], tf.int32, initializer=tf1.zeros_initializer(), trainable=False
    )
    step = tf1.train.get_or_create_global_step()
    grads = tf1.gradients(loss, tvars)
    added = [a.assign_add(g) for a, g in zip(accums, grads, strict=True)]
    with tf.control_dependencies(added):
        counted = count.assign_add(1)
    opt = tf1.train.AdamOptimizer(0.01)

    def apply():
        mean = [a.read_value() / float(every) for a in accums]
        applied = opt.apply_gradients(zip(mean, tvars, strict=True), global_step=step)
        with tf.control_dependencies([applied]):
            return tf.group([a.assign(tf.zeros_like(a)) for a in accums])

    applied = tf.cond(tf.equal(counted % every, 0), apply, tf.no_op, name="apply_every")
    train = tf.group(applied, name="train")
    return {"x": ([None, 10], "float32", None), "y": ([None], "int64", 3)}, train, loss


def accumulate2_v1():
    """Gradient accumulation over 2 steps, v1 control flow."""
    return _accumulate(False, 2)


def accumulate4_v2():
    """Gradient accumulation over 4 steps, v2 control flow (If)."""
    return _accumulate(True, 4)


def bert_adamw():
    """The shape of BERT's optimization.py: AdamW written as plain assigns, a hand-written
    LayerNorm, a learning rate with linear warmup and polynomial decay read from the global step,
    clip_by_global_norm, and the step increment grouped with the train op, unordered against
    the learning rate's read of the step."""
    tf1.enable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 8], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    h = _dense(x, 16, "encoder/dense", tf.nn.relu)
    with tf1.variable_scope("encoder/LayerNorm"):
        gamma = tf1.get_variable("gamma", [16], initializer=tf1.ones_initializer())
        beta = tf1.get_variable("beta", [16], initializer=tf1.zeros_initializer())
        mean, var = tf.nn.moments(h, axes=[-1], keepdims=True)
        h = (h - mean) * tf.math.rsqrt(var + 1e-6) * gamma + beta
    loss = _xent(_dense(h, 3, "cls"), y)
    step = tf1.train.get_or_create_global_step()
    warmup, total, peak = 2, 10, 0.01
    fstep = tf.cast(step, tf.float32)
    decayed = tf1.train.polynomial_decay(peak, step, total, end_learning_rate=0.0, power=1.0)
    lr = tf.where(fstep < warmup, peak * fstep / warmup + 1e-3, decayed, name="learning_rate")
    tvars = tf1.trainable_variables()
    grads, _ = tf.clip_by_global_norm(tf1.gradients(loss, tvars), 1.0)
    assigns = []
    for g, v in zip(grads, tvars, strict=True):
        name = v.op.name
        m = tf1.get_variable(name + "/adam_m", v.shape, initializer=tf1.zeros_initializer(), trainable=False)
        s = tf1.get_variable(name + "/adam_v", v.shape, initializer=tf1.zeros_initializer(), trainable=False)
        m_next = 0.9 * m + 0.1 * g
        s_next = 0.999 * s + 0.001 * tf.square(g)
        update = m_next / (tf.sqrt(s_next) + 1e-6)
        if "LayerNorm" not in name and "bias" not in name:
            update += 0.01 * v  # decoupled weight decay
        assigns += [v.assign(v - lr * update), m.assign(m_next), s.assign(s_next)]
    train = tf.group(assigns, name="apply")
    train = tf.group(train, [step.assign(step + 1)], name="train")
    return {"x": ([None, 8], "float32", None), "y": ([None], "int64", 3)}, train, loss


def _pinned_mlp(device: str):
    """mlp_sgd's model, with Momentum and a learning rate decayed by the global step, built
    entirely under `tf.device(device)`: the GraphDef keeps the pin on every node."""
    tf1.disable_resource_variables()
    with tf.device(device):
        x = tf1.placeholder(tf.float32, [None, 16], name="x")
        y = tf1.placeholder(tf.int64, [None], name="y")
        h = _dense(x, 32, "hidden", tf.nn.relu)
        logits = _dense(h, 5, "logits")
        loss = _xent(logits, y)
        step = tf1.train.get_or_create_global_step()
        rate = tf1.train.exponential_decay(0.1, step, 2, 0.5)
        train = tf1.train.MomentumOptimizer(rate, 0.9).minimize(loss, global_step=step, name="train")
    return {"x": ([None, 16], "float32", None), "y": ([None], "int64", 5)}, train, loss


def _while_model(resource: bool, read_value: bool):
    """A v1 while_loop whose body multiplies by a variable it reads itself (not through a value
    passed in), three times, then a dense head; Adam."""
    if resource:
        tf1.enable_resource_variables()
    else:
        tf1.disable_resource_variables()
    tf1.disable_control_flow_v2()
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    w = tf1.get_variable("loop/w", [6, 6], initializer=tf1.glorot_uniform_initializer())

    def body(i, h):
        weight = w.read_value() if read_value else w
        return i + 1, tf.tanh(tf.matmul(h, weight))

    _, h = tf1.while_loop(lambda i, h: i < 3, body, [tf.constant(0), x])
    loss = _xent(_dense(h, 3, "head"), y)
    train = tf1.train.AdamOptimizer(0.01).minimize(loss, name="train")
    return {"x": ([None, 6], "float32", None), "y": ([None], "int64", 3)}, train, loss


def while_ref():
    """A ref variable read directly inside a v1 while_loop."""
    return _while_model(resource=False, read_value=False)


def while_resource():
    """A resource variable read directly inside a v1 while_loop."""
    return _while_model(resource=True, read_value=False)


def while_read_value():
    """A resource variable read with read_value() inside a v1 while_loop."""
    return _while_model(resource=True, read_value=True)


def mlp_cpu_pinned():
    """The MLP under `tf.device("/device:CPU:0")`, as most TF1 scripts build it."""
    return _pinned_mlp("/device:CPU:0")


def mlp_gpu_pinned():
    """The MLP under `tf.device("/device:GPU:0")` (built on a machine without one)."""
    return _pinned_mlp("/device:GPU:0")


def class_weights():
    """Each example's loss weighted by its class: a [5] table (placeholder_with_default) gathered
    by the labels. Its first dimension is not the batch: every tower needs all five weights."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 16], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    weights = tf1.placeholder_with_default(tf.constant([1.0, 2.0, 3.0, 4.0, 5.0]), [5], name="class_weights")
    logits = _dense(_dense(x, 32, "hidden", tf.nn.relu), 5, "logits")
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    loss = tf.reduce_mean(tf.gather(weights, y) * per_example, name="loss")
    train = tf1.train.GradientDescentOptimizer(0.5).minimize(loss, name="train")
    return {"x": ([None, 16], "float32", None), "y": ([None], "int64", 5)}, train, loss


def side_inputs():
    """Inputs beside the batch: a per-example weight [None] (split), a feature mask [6] and a
    learning rate and keep probability (scalars) that every tower reads whole."""
    tf1.enable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    weight = tf1.placeholder(tf.float32, [None], name="example_weight")
    mask = tf1.placeholder(tf.float32, [6], name="mask")
    lr = tf1.placeholder_with_default(0.1, [], name="learning_rate")
    keep = tf1.placeholder_with_default(1.0, [], name="keep_prob")
    h = tf.nn.dropout(_dense(x * mask, 8, "hidden", tf.nn.relu), rate=1.0 - keep)
    logits = _dense(h, 3, "logits")
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    loss = tf.reduce_mean(weight * per_example, name="loss")
    train = tf1.train.MomentumOptimizer(lr, 0.9).minimize(loss, name="train")
    feeds = {
        "x": ([None, 6], "float32", None),
        "y": ([None], "int64", 3),
        "example_weight": ([None], "float32", None),
        "mask": ([6], "float32", None),
    }
    return feeds, train, loss


def pretrained_embedding():
    """A fed [8, 4] table of pretrained embeddings gathered by the ids, beside a trained one: its
    first dimension is the vocabulary, not the batch."""
    tf1.enable_resource_variables()
    ids = tf1.placeholder(tf.int32, [None], name="ids")
    y = tf1.placeholder(tf.int64, [None], name="y")
    table = tf1.placeholder(tf.float32, [8, 4], name="pretrained")
    trained = tf1.get_variable("embedding", [8, 4], initializer=tf1.random_normal_initializer(stddev=0.5))
    features = tf.concat([tf.gather(table, ids), tf.nn.embedding_lookup(trained, ids)], axis=1)
    loss = _xent(_dense(features, 5, "logits"), y)
    train = tf1.train.AdagradOptimizer(0.3).minimize(loss, name="train")
    feeds = {"ids": ([None], "int32", 8), "y": ([None], "int64", 5), "pretrained": ([8, 4], "float32", None)}
    return feeds, train, loss


def sparse_ids():
    """A SparseTensor input (tf.sparse_placeholder: indices, values, dense shape) of a varying
    number of ids per example, empty rows filled, into embedding_lookup_sparse."""
    tf1.enable_resource_variables()
    ids = tf1.sparse_placeholder(tf.int64, [None, None], name="ids")
    y = tf1.placeholder(tf.int64, [None], name="y")
    table = tf1.get_variable("embedding", [20, 4], initializer=tf1.random_normal_initializer(stddev=0.5))
    filled, _ = tf.sparse.fill_empty_rows(ids, tf.constant(0, tf.int64))
    features = tf.nn.embedding_lookup_sparse(table, filled, None, combiner="mean")
    loss = _xent(_dense(features, 3, "logits"), y)
    train = tf1.train.GradientDescentOptimizer(0.5).minimize(loss, name="train")
    feeds = {"y": ([None], "int64", 3)}
    sparse = {"ids": {"indices": "ids/indices", "values": "ids/values", "shape": "ids/shape", "vocab": 20}}
    return feeds, train, loss, {"sparse": sparse}


def reduced_input():
    """A [None] input only reduced to a scalar that scales the loss: split or whole, the shapes fit
    both; graphpass must be told (whole is what trains like the single tower)."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, 16], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    scale = tf1.placeholder(tf.float32, [None], name="scale")
    logits = _dense(x, 5, "logits")
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    loss = tf.multiply(tf.reduce_mean(per_example), tf.reduce_mean(tf.abs(scale)), name="loss")
    train = tf1.train.GradientDescentOptimizer(0.5).minimize(loss, name="train")
    feeds = {"x": ([None, 16], "float32", None), "y": ([None], "int64", 5), "scale": ([7], "float32", None)}
    return feeds, train, loss


BUILD_ONLY = {"keras_resnet50": keras_resnet50}  # built on demand, not written to tests/fixtures
MODELS = {
    "mlp_sgd": mlp_sgd,
    "mlp_wide": mlp_wide,
    "mixed_dtypes": mixed_dtypes,
    "inference_mlp": inference_mlp,
    "lstm_v1": lstm_v1,
    "lstm_v2": lstm_v2,
    "embedding_sgd": embedding_sgd,
    "embedding_adagrad": embedding_adagrad,
    "embedding_adam": embedding_adam,
    "batchnorm": batchnorm,
    "saver_mlp": saver_mlp,
    "two_optimizers": two_optimizers,
    "iterator_mlp": iterator_mlp,
    "conv_momentum": conv_momentum,
    "mlp_adam": mlp_adam,
    "mlp_clip": mlp_clip,
    "loss_scale_v1": loss_scale_v1,
    "loss_scale_v2": loss_scale_v2,
    "accumulate2_v1": accumulate2_v1,
    "accumulate4_v2": accumulate4_v2,
    "bert_adamw": bert_adamw,
    "mlp_cpu_pinned": mlp_cpu_pinned,
    "while_ref": while_ref,
    "while_resource": while_resource,
    "while_read_value": while_read_value,
    "mlp_gpu_pinned": mlp_gpu_pinned,
    "class_weights": class_weights,
    "side_inputs": side_inputs,
    "pretrained_embedding": pretrained_embedding,
    "sparse_ids": sparse_ids,
    "reduced_input": reduced_input,
}


def build(name: str):
    """(GraphDef, metadata) of fixture `name`, built in a fresh graph with a fixed seed."""
    tf1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(1234)
        tf1.disable_control_flow_v2()
        feeds, train, loss, *extra = {**MODELS, **BUILD_ONLY}[name]()
        init = tf1.global_variables_initializer()
    meta = {
        "feeds": {k: {"shape": s, "dtype": d, "classes": c} for k, (s, d, c) in feeds.items()},
        "train_op": train.name,
        "loss": loss.name,
        "init": init.name,
        "variables": [v.op.name for v in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)],
        **(extra[0] if extra else {}),
    }
    return graph.as_graph_def(), meta


def _write(name: str) -> None:
    graph_def, meta = build(name)
    (FIXTURES / f"{name}.pb").write_bytes(graph_def.SerializeToString(deterministic=True))
    (FIXTURES / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{name}: {len(graph_def.node)} nodes -> {FIXTURES / name}.pb", flush=True)


def main(argv: list[str]) -> int:
    names = argv or list(MODELS)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    # Each fixture in a process forked before any graph is built: TensorFlow numbers functions
    # (a v2 cond's branches, a while_v2 body) from a process-wide counter, so a fixture's bytes
    # would depend on which fixtures were built before it in the same process.
    context = multiprocessing.get_context("fork")
    for name in names:
        child = context.Process(target=_write, args=(name,))
        child.start()
        child.join()
        if child.exitcode:
            print(f"{name}: failed (exit {child.exitcode})", file=sys.stderr)
            return 1
    if "mlp_sgd" in names:
        EXAMPLES.mkdir(exist_ok=True)
        (EXAMPLES / "mlp.pb").write_bytes((FIXTURES / "mlp_sgd.pb").read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
