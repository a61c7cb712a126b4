"""GraphDef mutations. Each takes (graph_def, a, b, c) with small non-negative ints that pick nodes,
inputs and variants (modulo what exists), edits the GraphDef in place and returns a description with
concrete node names (or None where it does not apply). `mutate` applies a list of them to a fixture,
`replay` re-runs one case with the raw exception, and the "graph" task runs one in a worker."""

from __future__ import annotations

import functools
import math
import os

from hypothesis import strategies as st

from .harness import ALL_FIXTURES, TASKS, Outcomes, check_rewrite, fixture_graph, rename_everywhere


@functools.cache
def op_pool() -> tuple[str, ...]:
    """Registered op types: every op the fixtures use, plus ops graphpass treats specially."""
    ops = {n.op for name in ALL_FIXTURES for n in fixture_graph(name).node}
    ops |= {
        "NoOp", "Identity", "IdentityN", "Const", "Placeholder", "PlaceholderWithDefault", "VariableV2",
        "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "Assign", "AssignAdd", "ApplyGradientDescent",
        "ResourceApplyGradientDescent", "ApplyAdam", "ResourceApplyAdam", "ApplyMomentum",
        "SparseApplyMomentum", "ResourceSparseApplyAdagrad", "AddN", "Split", "ConcatV2", "Switch",
        "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "NcclAllReduce", "CollectiveReduceV2",
        "StatefulPartitionedCall", "RefIdentity", "TemporaryVariable", "Assert", "ScatterAdd",
        "ResourceAccumulatorApplyGradient", "ConditionalAccumulator", "Mean", "Shape", "Reshape",
    }  # fmt: skip
    return tuple(sorted(ops))


UNKNOWN_OPS = ("NoSuchOp", "", "MyCustomOp>", "Apply", "ApplyGradientDescentV9")

WEIRD_NAMES = (
    "",
    "x:1",
    "x:-1",
    "^x",
    "tower1/{name}",
    "tower0/{name}",
    "{name}/split",
    "reduced_grads/{name}",
    "allreduce/{name}/sum",
    "tower1/reduced_grads/{name}",
    "gradients/{name}_grad/x",
    "gradient_tape/{name}",
    "{name} with space",
    "名前/{name}",
    "line\nbreak",
    "loc:@{name}",
    "/",
    "a//b",
    "_grad/",
    "init",
    "{name}_1",
    "x" * 300,
    "{other}",
)

BAD_REFS = (
    "no_such_node",
    "{name}:7",
    "{name}:-1",
    "{name}:x",
    "{name}:",
    "{name}:99999999999999999999",
    "{name}:00",
    "^no_such_node",
    "^",
    "",
    ":",
    "^{name}:1",
    "{name}",
    "^{name}",
)

DEVICE_STRINGS = (
    "",
    "/device:GPU:0",
    "/device:CPU:0",
    "/cpu:0",
    "/device:TPU:0",
    "garbage",
    "/job:ps/task:0",
    "/job:ps/task:0/device:CPU:0",
    "/device:GPU:*",
    "/gpu:99",
    "/device:GPU:-1",
    "/job:a:b",
)


def _name_template(t: str, gd, i: int) -> str:
    node = gd.node[i % len(gd.node)]
    other = gd.node[(i * 7 + 3) % len(gd.node)]
    return t.replace("{name}", node.name).replace("{other}", other.name)


def _pick(gd, i: int):
    return gd.node[i % len(gd.node)] if len(gd.node) else None


def m_delete_node(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    name = n.name
    gd.node.remove(n)
    return f"delete node '{name}'"


def m_rename_node(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    old, new = n.name, _name_template(WEIRD_NAMES[b % len(WEIRD_NAMES)], gd, a)
    n.name = new
    return f"rename node '{old}' to {new!r} (references left pointing at the old name)"


def m_rename_consistently(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    old, new = n.name, _name_template(WEIRD_NAMES[b % len(WEIRD_NAMES)], gd, a)
    rename_everywhere(gd, {old: new})
    return f"rename node '{old}' to {new!r} with its references"


def m_rename_scope(gd, a, b, c):
    """Rename a whole top-level scope (e.g. 'gradients' -> 'g'), references included."""
    scopes = sorted({n.name.split("/")[0] for n in gd.node if "/" in n.name})
    if not scopes:
        return None
    scope = scopes[a % len(scopes)]
    new_scope = ("g", "tower1", "gradient_tape", "x_grad", "")[b % 5]
    mapping = {n.name: new_scope + n.name[len(scope) :] for n in gd.node if n.name.startswith(scope + "/")}
    rename_everywhere(gd, mapping)
    return f"rename scope '{scope}/' to '{new_scope}/' with references"


def m_bad_input(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    ref = _name_template(BAD_REFS[c % len(BAD_REFS)], gd, a * 31 + b)
    if n.input:
        pos = b % len(n.input)
        old = n.input[pos]
        n.input[pos] = ref
        return f"node '{n.name}': input {pos} {old!r} -> {ref!r}"
    n.input.append(ref)
    return f"node '{n.name}': add input {ref!r}"


def m_wrong_output_index(gd, a, b, c):
    candidates = [n for n in gd.node if any(not r.startswith("^") for r in n.input)]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    data = [k for k, r in enumerate(n.input) if not r.startswith("^")]
    pos = data[b % len(data)]
    old = n.input[pos]
    base = old.rsplit(":", 1)[0] if ":" in old else old
    idx = (1, 2, 7, 100, 2**31)[c % 5]
    n.input[pos] = f"{base}:{idx}"
    return f"node '{n.name}': input {pos} {old!r} -> '{base}:{idx}'"


def m_add_control_input(gd, a, b, c):
    n, t = _pick(gd, a), _pick(gd, b)
    if n is None:
        return None
    where = c % 2
    if where == 0:
        n.input.append("^" + t.name)
        return f"node '{n.name}': add control input '^{t.name}'"
    n.input.insert(0, "^" + t.name)  # a control input before data inputs
    return f"node '{n.name}': insert control input '^{t.name}' before its data inputs"


def m_remove_input(gd, a, b, c):
    candidates = [n for n in gd.node if n.input]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    if c % 3 == 0:
        del n.input[:]
        return f"node '{n.name}': remove all inputs"
    pos = b % len(n.input)
    old = n.input[pos]
    del n.input[pos]
    return f"node '{n.name}': remove input {pos} ({old!r})"


def m_add_data_input(gd, a, b, c):
    n, t = _pick(gd, a), _pick(gd, b)
    if n is None:
        return None
    data = [r for r in n.input if not r.startswith("^")]
    ctrl = [r for r in n.input if r.startswith("^")]
    del n.input[:]
    n.input.extend(data + [t.name] + ctrl)
    return f"node '{n.name}': add data input '{t.name}'"


def m_swap_inputs(gd, a, b, c):
    candidates = [n for n in gd.node if sum(not r.startswith("^") for r in n.input) >= 2]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    data = [k for k, r in enumerate(n.input) if not r.startswith("^")]
    i, j = data[b % len(data)], data[(b + 1 + c) % len(data)]
    n.input[i], n.input[j] = n.input[j], n.input[i]
    return f"node '{n.name}': swap inputs {i} and {j}"


def m_change_op(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    old = n.op
    if c % 4 == 0:
        n.op = UNKNOWN_OPS[b % len(UNKNOWN_OPS)]
    else:
        pool = op_pool()
        n.op = pool[b % len(pool)]
    return f"node '{n.name}': op {old} -> {n.op!r}"


def _bad_attr_values():
    from tensorflow.core.framework import attr_value_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    A = attr_value_pb2.AttrValue
    TSP = tensor_shape_pb2.TensorShapeProto

    def shape(dims):
        return A(shape=TSP(dim=[TSP.Dim(size=d) for d in dims]))

    float3 = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=TSP(dim=[TSP.Dim(size=3)]), tensor_content=b"\x00"
    )
    int_vals = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=TSP(), int_val=[1, 2])
    strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=TSP(), string_val=[b"\xff"])
    huge = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=TSP(dim=[TSP.Dim(size=2**40)]), float_val=[1.0]
    )
    return [
        ("empty AttrValue", A()),
        ("type DT_INVALID", A(type=types_pb2.DT_INVALID)),
        ("type DT_RESOURCE", A(type=types_pb2.DT_RESOURCE)),
        ("type DT_STRING", A(type=types_pb2.DT_STRING)),
        ("type DT_INT64", A(type=types_pb2.DT_INT64)),
        ("type DT_FLOAT_REF", A(type=types_pb2.DT_FLOAT_REF)),
        ("type 9999 (no such DataType)", A(type=9999)),
        ("s 'garbage'", A(s=b"garbage")),
        ("s non-UTF-8", A(s=b"\xff\xfe")),
        ("i -1", A(i=-1)),
        ("i 2**40", A(i=2**40)),
        ("f nan", A(f=math.nan)),
        ("b true", A(b=True)),
        ("shape unknown rank", A(shape=TSP(unknown_rank=True))),
        ("shape scalar", shape([])),
        ("shape [-5, 3]", shape([-5, 3])),
        ("shape [2**40, 2**40]", shape([2**40, 2**40])),
        ("shape [0]", shape([0])),
        ("empty list", A(list=A.ListValue())),
        ("list of types", A(list=A.ListValue(type=[types_pb2.DT_FLOAT, types_pb2.DT_INT32]))),
        ("list ['loc:@no_such_node']", A(list=A.ListValue(s=[b"loc:@no_such_node"]))),
        ("list ['loc:@']", A(list=A.ListValue(s=[b"loc:@"]))),
        ("list ['loc:@\\xff'] (not UTF-8)", A(list=A.ListValue(s=[b"loc:@\xff"]))),
        ("list ['not-a-loc']", A(list=A.ListValue(s=[b"not-a-loc"]))),
        ("empty tensor", A(tensor=tensor_pb2.TensorProto())),
        ("float[3] tensor with 1 content byte", A(tensor=float3)),
        ("int32 scalar tensor with 2 values", A(tensor=int_vals)),
        ("string tensor", A(tensor=strings)),
        ("float[2**40] tensor", A(tensor=huge)),
        ("func 'nope'", A(func=attr_value_pb2.NameAttrList(name="nope"))),
        ("placeholder 'T'", A(placeholder="T")),
    ]


ATTR_KEYS = (
    "dtype", "shape", "T", "value", "_class", "N", "num_split", "Tidx", "out_type", "use_locking",
    "container", "shared_name", "_output_shapes", "validate_shape", "Tshape", "axis", "keep_dims",
)  # fmt: skip


def _attr_key(n, b: int) -> str:
    keys = sorted(n.attr) + [k for k in ATTR_KEYS if k not in n.attr]
    own = sorted(n.attr)
    # prefer attributes the node has (two times in three)
    if own and b % 3:
        return own[b % len(own)]
    return keys[b % len(keys)]


def m_delete_attr(gd, a, b, c):
    candidates = [n for n in gd.node if n.attr]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    keys = sorted(n.attr)
    key = keys[b % len(keys)]
    del n.attr[key]
    return f"node '{n.name}' ({n.op}): delete attr '{key}'"


def m_corrupt_attr(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    key = _attr_key(n, b)
    label, value = _bad_attr_values()[c % len(_bad_attr_values())]
    n.attr[key].CopyFrom(value)
    return f"node '{n.name}' ({n.op}): attr '{key}' = {label}"


def m_bogus_colocation(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    other = _pick(gd, b).name
    variants = [
        [b"loc:@no_such_node"],
        [b"loc:@" + n.name.encode()],
        [b"loc:@" + other.encode()],
        [b"loc:@"],
        [b"loc:@\xff\xfe"],
        [b"loc:@" + other.encode(), b"loc:@no_such_node"],
        [b"garbage"],
        [],
    ]
    vals = variants[c % len(variants)]
    n.attr["_class"].list.s[:] = vals
    return f"node '{n.name}': _class = {vals!r}"


def m_duplicate_node(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    copy = gd.node.add()
    copy.CopyFrom(n)
    if c % 2:
        copy.name = n.name + "_dup"
        return f"copy node '{n.name}' as '{copy.name}' (same inputs)"
    return f"duplicate node '{n.name}' (same name twice)"


def m_make_cycle(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    from graphpass.ir import names

    by_name = {x.name: x for x in gd.node}
    target = n
    for _ in range(1 + b % 6):  # walk back to an ancestor
        ins = [names.node_of(r) for r in target.input if names.node_of(r) in by_name]
        if not ins:
            break
        target = by_name[ins[c % len(ins)]]
    if c % 2:
        target.input.append("^" + n.name)
        return f"cycle: node '{target.name}' gets control input '^{n.name}'"
    data = [r for r in target.input if not r.startswith("^")]
    ctrl = [r for r in target.input if r.startswith("^")]
    del target.input[:]
    target.input.extend(data + [n.name] + ctrl)
    return f"cycle: node '{target.name}' gets data input '{n.name}'"


def m_placeholder_shape(gd, a, b, c):
    from tensorflow.core.framework import tensor_shape_pb2

    phs = [n for n in gd.node if n.op in ("Placeholder", "PlaceholderWithDefault")]
    if not phs:
        return None
    n = phs[a % len(phs)]
    TSP = tensor_shape_pb2.TensorShapeProto
    old = [d.size for d in n.attr["shape"].shape.dim] if "shape" in n.attr else None
    rest = (old or [-1, 4])[1:]
    variants = [
        ("fixed batch 3", [3] + rest),
        ("fixed batch 5", [5] + rest),
        ("fixed batch 6", [6] + rest),
        ("fixed batch 1", [1] + rest),
        ("fixed batch 0", [0] + rest),
        ("batch -7", [-7] + rest),
        ("batch 2**40", [2**40] + rest),
        ("rank 0", []),
        ("unknown rank", None),
        ("rank 1 [-1]", [-1]),
        ("extra dims", [-1] + rest + [2, 2]),
        ("no shape attr", "delete"),
    ]
    label, dims = variants[c % len(variants)]
    if dims == "delete":
        if "shape" in n.attr:
            del n.attr["shape"]
    elif dims is None:
        n.attr["shape"].shape.CopyFrom(TSP(unknown_rank=True))
    else:
        n.attr["shape"].shape.CopyFrom(TSP(dim=[TSP.Dim(size=d) for d in dims]))
    return f"placeholder '{n.name}' (shape {old}): {label}"


def m_set_device(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    dev = DEVICE_STRINGS[c % len(DEVICE_STRINGS)]
    if b % 4 == 0:
        for x in gd.node:
            x.device = dev
        return f"every node: device = {dev!r}"
    n.device = dev
    return f"node '{n.name}': device = {dev!r}"


def m_reorder(gd, a, b, c):
    if len(gd.node) < 2:
        return None
    nodes = list(gd.node)
    if c % 2:
        nodes.reverse()
        label = "reverse the node order"
    else:
        k = a % len(nodes)
        nodes.insert(0, nodes.pop(k))
        label = f"move node '{nodes[0].name}' first"
    del gd.node[:]
    gd.node.extend(nodes)
    return label


def m_versions(gd, a, b, c):
    variant = c % 4
    if variant == 0:
        gd.versions.producer = 10**6
        return "versions.producer = 10**6"
    if variant == 1:
        gd.versions.min_consumer = 10**6
        return "versions.min_consumer = 10**6"
    if variant == 2:
        gd.versions.bad_consumers.append(gd.versions.producer)
        return "versions.bad_consumers = [producer]"
    gd.versions.producer = -1
    return "versions.producer = -1"


def m_strip_default_attrs(gd, a, b, c):
    """Remove attrs equal to their OpDef default, as exporters do (strip_default_attrs=True)."""
    from tensorflow.python.framework import op_def_registry

    nodes = list(gd.node) if c % 2 else [_pick(gd, a)] if len(gd.node) else []
    stripped = 0
    for n in nodes:
        op = op_def_registry.get(n.op)
        for attr in op.attr if op is not None else ():
            if (
                attr.HasField("default_value")
                and attr.name in n.attr
                and n.attr[attr.name] == attr.default_value
            ):
                del n.attr[attr.name]
                stripped += 1
    where = "every node" if c % 2 else f"node '{nodes[0].name}'" if nodes else "no node"
    return f"strip default-valued attrs from {where} ({stripped} attrs)"


def m_clear_graph(gd, a, b, c):
    keep = a % 4
    del gd.node[keep:]
    return f"keep only the first {keep} nodes"


MUTATIONS = {
    f.__name__[2:]: f
    for f in (
        m_delete_node,
        m_rename_node,
        m_rename_consistently,
        m_rename_scope,
        m_bad_input,
        m_wrong_output_index,
        m_add_control_input,
        m_remove_input,
        m_add_data_input,
        m_swap_inputs,
        m_change_op,
        m_delete_attr,
        m_corrupt_attr,
        m_bogus_colocation,
        m_duplicate_node,
        m_make_cycle,
        m_placeholder_shape,
        m_set_device,
        m_reorder,
        m_versions,
        m_strip_default_attrs,
        m_clear_graph,
    )
}


def mutate(fixture: str, mutations) -> tuple[object, list[str]]:
    """The fixture's GraphDef with `mutations` [(kind, a, b, c), ...] applied, and what each did."""
    gd = fixture_graph(fixture)
    done = []
    for kind, a, b, c in mutations:
        what = MUTATIONS[kind](gd, a, b, c)
        done.append(what or f"{kind}: not applicable")
    return gd, done


def replay(
    fixture: str, mutations=(), devices=2, rules="replicated-collective", device_type="CPU", verify_each=False
):
    """Re-run one graph case, letting the raw exception propagate; then verify the output."""
    from graphpass import api
    from graphpass.ir import verify
    from graphpass.ir.graph import Graph

    gd, done = mutate(fixture, mutations)
    for line in done:
        print("mutation:", line)
    if isinstance(rules, str) and "\n" in rules:
        from graphpass.pipeline import Pipeline

        rules = Pipeline.from_yaml(rules)
    out = api.rewrite(gd, devices=devices, rules=rules, device_type=device_type, verify_each=verify_each)
    verify.check(Graph(out))
    return out


# GRAPHPASS_FUZZ_MUTATIONS=kind,kind,... restricts the graph mutations (to look past a common bug)
_KINDS = [k for k in os.environ.get("GRAPHPASS_FUZZ_MUTATIONS", "").split(",") if k] or sorted(MUTATIONS)
mutation_st = st.tuples(
    st.sampled_from(_KINDS),
    st.integers(0, 4095),
    st.integers(0, 4095),
    st.integers(0, 4095),
)
towers_st = st.sampled_from([1, 2, 2, 3, 4, 4, 5, 8, 16])


def task_graph(o: Outcomes, reproducer: str, fixture, mutations, towers, rules, device_type, verify_each):
    gd, _ = mutate(fixture, mutations)
    check_rewrite(o, reproducer, gd, towers, rules, device_type, verify_each)


TASKS["graph"] = task_graph
