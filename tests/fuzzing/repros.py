"""The repro table: each bug the fuzz tests found, as the fixture (or a GraphDef builder), the edit
that shows it and the rewrite's arguments; the "repro" task runs one through the oracle, and
tests/test_fuzz_repros.py pins each. Also the helpers the regression tests share."""

from __future__ import annotations

from .graphs import m_strip_default_attrs, mutate
from .harness import TASKS, Outcomes, _expect, check_rewrite, fixture_graph, rename_everywhere


def _node(gd, name: str):
    return next(n for n in gd.node if n.name == name)


def _edit_delete(gd):
    gd.node.remove(_node(gd, "hidden/kernel/read"))


def _edit_colon_name(gd):
    rename_everywhere(gd, {"x": "x:1"})


def _edit_class_not_utf8(gd):
    _node(gd, "hidden/MatMul").attr["_class"].list.s[:] = [b"loc:@\xff"]


def _edit_class_missing(gd):
    _node(gd, "hidden/MatMul").attr["_class"].list.s[:] = [b"loc:@no_such_node"]


def _edit_device(gd):
    _node(gd, "hidden/MatMul").device = "garbage"


def _edit_index_2_31(gd):
    _node(gd, "hidden/MatMul").input[0] = "x:2147483648"


def _edit_scope_beta2_power(gd):
    rename_everywhere(
        gd, {n.name: "gradient_tape" + n.name[11:] for n in gd.node if n.name.startswith("beta2_power/")}
    )


def _edit_train_under_x_grad(gd):
    """gradients/ and train/ renamed x_grad/, a name like tf.gradients' scopes (no variable in it)."""
    rename_everywhere(
        gd,
        {
            n.name: "x_grad/" + n.name.split("/", 1)[1]
            for n in gd.node
            if n.name.startswith(("gradients/", "train/"))
        },
    )


def _two_losses_one_variable():
    """A TF1 graph training one variable with two optimizers on two losses (alternating training)."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        w = tf1.get_variable("w", [4, 2], use_resource=False)
        y = tf.matmul(x, w)
        tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(y * y), name="train1")
        tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.abs(y)), name="train2")
        tf1.global_variables_initializer()
    return graph.as_graph_def()


def _edit_strip_defaults(gd):
    m_strip_default_attrs(gd, 0, 0, 1)


def _edit_variable_dtype_tensor(gd):
    slot = _node(gd, "layer1/bias/Adam_1")
    slot.attr["dtype"].Clear()
    slot.attr["dtype"].tensor.dtype = 1  # a tensor where a type belongs


def _edit_const_value_string(gd):
    """The int32 axis of the cross-entropy gradient's ExpandDims holds a string tensor: TensorFlow's
    shape inference aborted the process reading it (SIGABRT, found by exploration)."""
    axis = next(n for n in gd.node if n.op == "Const" and n.name.endswith("_grad/ExpandDims/dim"))
    axis.attr["value"].tensor.Clear()
    axis.attr["value"].tensor.dtype = 7  # DT_STRING
    axis.attr["value"].tensor.string_val.append(b"x")


# id -> (fixture name or GraphDef builder, edit of the GraphDef, devices, rules, device_type)
REPROS = {
    "dangling-input": ("mlp_sgd", _edit_delete, 2, "replicated-collective", "CPU"),
    "dangling-input-colon-name": ("mlp_sgd", _edit_colon_name, 2, "replicated-collective", "CPU"),
    "colocation-not-utf8": ("mlp_sgd", _edit_class_not_utf8, 2, "replicated-collective", "CPU"),
    "colocation-missing-target": ("mlp_sgd", _edit_class_missing, 2, "replicated-collective", "CPU"),
    "node-device-unparsable": ("mlp_sgd", _edit_device, 2, "replicated-collective", "CPU"),
    "output-index-segfault": ("mlp_sgd", _edit_index_2_31, 2, "replicated-collective", "CPU"),
    "one-tower-concat": ("mlp_sgd", None, 1, "replicated-collective", "CPU"),
    "default-attr-inserted": ("mlp_adam", _edit_strip_defaults, 2, "replicated-collective", "CPU"),
    "gradient-scope-misread": (
        "embedding_adam",
        _edit_scope_beta2_power,
        2,
        "replicated-hierarchical",
        "CPU",
    ),
    "nccl-shared-name": (_two_losses_one_variable, None, 2, "replicated-nccl", "GPU"),
    "variable-dtype-not-a-type": ("mlp_adam", _edit_variable_dtype_tensor, 2, "ps-balanced", "GPU"),
    "const-value-not-its-dtype": (
        "embedding_adam",
        _edit_const_value_string,
        8,
        "replicated-hierarchical",
        "CPU",
    ),
    # a tower node colocated with a tower-0-only one (a BatchNorm statistics update)
    "colocated-with-tower0-only": (
        lambda: mutate("batchnorm", [("bogus_colocation", 219, 36, 2090)])[0],
        None,
        2,
        "replicated-nccl",
        "GPU",
    ),
    # an Adam update with its variable and first slot swapped: variables each other's slots
    "slots-in-a-circle": (
        lambda: mutate("mlp_clip", [("swap_inputs", 349, 361, 168)])[0],
        None,
        8,
        "ps-balanced",
        "CPU",
    ),
    # the input's own NcclAllReduce (a mutated op) without its attributes
    "input-collective-inconsistent": (
        lambda: mutate("two_optimizers", [("change_op", 132, 589, 177)])[0],
        None,
        2,
        "ps-balanced",
        "CPU",
    ),
    # a user's write of an Adam slot outside the training step, from a value the towers compute
    "mirror-reads-tower-value": (
        lambda: mutate("embedding_adam", [("duplicate_node", 720, 207, 45)] * 3)[0],
        None,
        4,
        "replicated-hierarchical",
        "GPU",
    ),
    # user scopes renamed x_grad/, like tf.gradients' own: the global step's increment was
    # gathered as sparse indices (the scalar check ran for guessed scopes only)
    "scalar-sparse-part-under-grad-scope": (
        "conv_momentum",
        _edit_train_under_x_grad,
        2,
        "replicated-hierarchical",
        "CPU",
    ),
    # every variable of a layer under a user scope named x_grad/: initializers were taken for
    # gradient-driven updates, variable reads for gradients
    "variable-under-grad-named-scope": (
        lambda: mutate(
            "lstm_v1",
            [
                ("rename_scope", 771, 383, 1814),
                ("rename_scope", 2675, 58, 864),
                ("rename_scope", 2675, 58, 864),
            ],
        )[0],
        None,
        4,
        "replicated-hierarchical",
        "CPU",
    ),
    # Adam's beta1 power update renamed into the gradient scope: a scalar taken for the gradient
    # of a [16] bias, packed with the others into pieces that do not add up
    "assign-update-misread-gradient": (
        lambda: mutate(
            "mlp_clip",
            [
                ("rename_consistently", 1574, 490, 474),
                ("rename_consistently", 333, 698, 1574),
                ("rename_consistently", 1906, 1666, 1666),
            ],
        )[0],
        None,
        2,
        "replicated-hierarchical",
        "GPU",
    ),
    # user scopes renamed gradient_tape/: a scalar constant was gathered as sparse indices
    "scalar-taken-for-sparse-indices": (
        lambda: mutate(
            "two_optimizers",
            [
                ("rename_scope", 2128, 217, 353),
                ("rename_scope", 81, 277, 835),
                ("rename_scope", 2128, 217, 353),
            ],
        )[0],
        None,
        2,
        "replicated-naive",
        "CPU",
    ),
}


def task_repro(o: Outcomes, reproducer: str, name: str):
    fixture, edit, devices, rules, device_type = REPROS[name]
    gd = fixture() if callable(fixture) else fixture_graph(fixture)
    if edit is not None:
        edit(gd)
    check_rewrite(o, reproducer, gd, devices, rules, device_type)


TASKS["repro"] = task_repro


def _ends_well(o: Outcomes) -> None:
    """No failure, and no InternalError (bad input is the user's error, not graphpass's bug)."""
    assert not o.failures and not o.internal, o.report(list(o.failures.values()) + list(o.internal.values()))


def _regression(name: str, worker=None) -> None:
    o = Outcomes(f"regression {name}", known_bugs=False)
    if worker is None:
        task_repro(o, name, name)
    else:
        worker.run(o, name, ("repro", name))
    _ends_well(o)


def _call_ends_well(fn, *args, **kwargs) -> None:
    o = Outcomes("regression", known_bugs=False)
    _expect(o, "call", fn, *args, **kwargs)
    _ends_well(o)
