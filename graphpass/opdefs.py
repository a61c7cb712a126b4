"""Facts about op types, all read from TensorFlow's op and kernel registries (no hand-written tables)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import kernels, op_def_registry

from .errors import InvalidGraphError

RESOURCE = types_pb2.DT_RESOURCE


@functools.cache
def _op_def(op_type: str):
    return op_def_registry.get(op_type)


def is_registered(op_type: str) -> bool:
    return _op_def(op_type) is not None


def op_def(op_type: str, node_name: str | None = None):
    """The OpDef of `op_type`; an InvalidGraphError naming the node if TensorFlow does not know it."""
    d = _op_def(op_type)
    if d is None:
        where = f"node '{node_name}' has " if node_name else ""
        raise InvalidGraphError(
            f"{where}op type '{op_type}' which the installed TensorFlow does not register "
            "(a custom op library not loaded, or a graph from a newer TensorFlow)"
        )
    return d


@functools.cache
def function_attrs(op_type: str) -> tuple[str, ...]:
    """The attrs of `op_type` that name functions to call (If's branches, While's body, a
    dataset's map function): of type func or list(func). None for an unknown op."""
    d = _op_def(op_type)
    return tuple(sorted(a.name for a in d.attr if a.type in ("func", "list(func)"))) if d else ()


def _is_state_arg(arg) -> bool:
    return arg.is_ref or arg.type == RESOURCE


@functools.cache
def is_variable_op(op_type: str) -> bool:
    """True for ops that create a variable: no inputs, one ref/resource output, typed by `dtype` and `shape`.

    The gradient accumulators share that signature but hold gradients, not values; their
    `reduction_type` attribute tells them apart.
    """
    d = _op_def(op_type)
    if d is None or d.input_arg or len(d.output_arg) != 1 or not _is_state_arg(d.output_arg[0]):
        return False
    attrs = {a.name for a in d.attr}
    return {"dtype", "shape", "shared_name"} <= attrs and "reduction_type" not in attrs


def is_resource_variable_op(op_type: str) -> bool:
    d = _op_def(op_type)
    return is_variable_op(op_type) and d.output_arg[0].type == RESOURCE


@functools.cache
def is_stateful(op_type: str) -> bool:
    d = _op_def(op_type)
    return bool(d and d.is_stateful)


@dataclass(frozen=True)
class ApplySignature:
    """Where an optimizer apply op takes its variable, optimizer state, gradient and (sparse) indices."""

    var: int
    state: tuple[int, ...]
    grad: int
    indices: int | None
    resource: bool

    @property
    def sparse(self) -> bool:
        return self.indices is not None


@functools.cache
def apply_signature(op_type: str) -> ApplySignature | None:
    """The ApplySignature of an optimizer update op, or None if `op_type` is not one.

    An apply op's first input is the variable it updates (`var`, a ref or resource); its other
    ref/resource inputs are optimizer state (slots); the gradient is the input named `grad`
    (`delta` in the gradient-descent family).
    """
    d = _op_def(op_type)
    if d is None or not d.input_arg:
        return None
    args = list(d.input_arg)
    if args[0].name != "var" or not _is_state_arg(args[0]):
        return None
    if any(a.number_attr or a.type_list_attr for a in args):
        return None
    names = [a.name for a in args]
    grad_name = "grad" if "grad" in names else "delta" if "delta" in names else None
    if grad_name is None:
        return None
    state = tuple(i for i, a in enumerate(args[1:], 1) if _is_state_arg(a))
    indices = names.index("indices") if "indices" in names else None
    return ApplySignature(0, state, names.index(grad_name), indices, args[0].type == RESOURCE)


@functools.cache
def written_inputs(op_type: str) -> tuple[int, ...]:
    """Input positions whose variable the op modifies.

    From the OpDef: a ref input of an op that returns a ref (Assign, ScatterAdd, Apply*), or a
    resource input of an op with no outputs (AssignVariableOp, ResourceScatterAdd, ResourceApply*).
    Readers (Identity, ReadVariableOp, ResourceGather, IsVariableInitialized) return values.
    """
    d = _op_def(op_type)
    if d is None or any(a.number_attr or a.type_list_attr for a in d.input_arg):
        return ()
    returns_ref = any(o.is_ref for o in d.output_arg)
    no_outputs = not d.output_arg
    return tuple(
        i
        for i, a in enumerate(d.input_arg)
        if (a.is_ref and returns_ref) or (a.type == RESOURCE and no_outputs)
    )


def attr(node, name: str):
    """`node`'s attr `name`, or its OpDef default when the exporter stripped it (never inserts an
    empty value into the node, as `node.attr[name]` would)."""
    value = node.attr.get(name)
    if value is not None:
        return value
    d = _op_def(node.op)
    for a in d.attr if d is not None else ():
        if a.name == name and a.HasField("default_value"):
            return a.default_value
    raise InvalidGraphError(f"node '{node.name}' ({node.op}) lacks attr '{name}', which has no default")


def dtype_attr(node, name: str) -> int:
    """`node`'s type attr `name` (see attr), refused unless it holds a valid DataType."""
    value = attr(node, name)
    if value.WhichOneof("value") != "type" or value.type not in _DATA_TYPES:
        raise InvalidGraphError(f"node '{node.name}' ({node.op}) has attr '{name}' that is not a data type")
    return value.type


_DATA_TYPES = frozenset(v for v in types_pb2.DataType.values() if v != types_pb2.DT_INVALID)


def _arg_count(arg, node) -> int:
    if arg.number_attr:
        return attr(node, arg.number_attr).i
    if arg.type_list_attr:
        return len(attr(node, arg.type_list_attr).list.type)
    return 1


def _arg_types(arg, node) -> list[int]:
    if arg.type_list_attr:
        return list(attr(node, arg.type_list_attr).list.type)
    t = attr(node, arg.type_attr).type if arg.type_attr else arg.type
    return [t] * _arg_count(arg, node)


def output_types(node) -> list[int]:
    """The DataType of each output of `node` (refs reported as their value type)."""
    d = op_def(node.op, node.name)
    out: list[int] = []
    for arg in d.output_arg:
        out.extend(_arg_types(arg, node))
    return out


@functools.cache
def makes_handles(op_type: str) -> bool:
    """Whether every output of `op_type` is a handle (a resource, or a ref like a v1 queue's):
    with no inputs and state, a persistent object (table, queue, iterator), not data."""
    d = _op_def(op_type)
    return d is not None and all(a.type == RESOURCE or a.is_ref for a in d.output_arg)


def output_dtype(node, index: int) -> int:
    types = output_types(node)
    if index >= len(types):
        raise InvalidGraphError(f"node '{node.name}' ({node.op}) has no output {index}")
    return types[index]


@functools.cache
def _fixed_arity(op_type: str) -> int | None:
    d = _op_def(op_type)
    if d is None or any(a.number_attr or a.type_list_attr for a in d.input_arg):
        return None
    return len(d.input_arg)


def num_inputs(node) -> int:
    """How many data inputs `node` must have, by its OpDef and attrs."""
    fixed = _fixed_arity(node.op)
    return fixed if fixed is not None else len(input_arg_positions(node))


def input_arg_positions(node) -> list[str]:
    """The OpDef argument name of each data input of `node`, in order."""
    d = op_def(node.op, node.name)
    names: list[str] = []
    for arg in d.input_arg:
        names.extend([arg.name] * _arg_count(arg, node))
    return names


def takes_state_from(node, producer: str) -> bool:
    """Whether `node` reads `producer` at a ref or resource input (and so must share its device)."""
    d = op_def(node.op, node.name)
    pos = 0
    for arg in d.input_arg:
        n = _arg_count(arg, node)
        for k in range(pos, pos + n):
            if k < len(node.input) and (arg.is_ref or arg.type == RESOURCE):
                ref = node.input[k]
                if not ref.startswith("^") and ref.split(":")[0] == producer:
                    return True
        pos += n
    return False


@functools.cache
def _kernels(op_type: str):
    return tuple(kernels.get_registered_kernels_for_op(op_type).kernel)


@functools.cache
def _kernel_constraints(op_type: str, device_type: str) -> tuple[tuple[tuple[str, frozenset], ...], ...]:
    """For each kernel of `op_type` on `device_type` (or DEFAULT): its (attr, allowed types) pairs."""
    out = []
    for k in _kernels(op_type):
        if k.device_type in (device_type, "DEFAULT"):
            out.append(
                tuple(
                    (c.name, frozenset(c.allowed_values.list.type))
                    for c in k.constraint
                    if c.allowed_values.list.type
                )
            )
    return tuple(out)


def has_kernel(node, device_type: str) -> bool:
    """Whether TensorFlow registers a kernel for `node` (with its attrs) on `device_type`."""
    names = _constrained_attrs(node.op, device_type)
    attrs = node.attr
    types = tuple(attrs[n].type if n in attrs else None for n in names)
    return _has_kernel(node.op, device_type, types)


@functools.cache
def _constrained_attrs(op_type: str, device_type: str) -> tuple[str, ...]:
    return tuple(sorted({name for k in _kernel_constraints(op_type, device_type) for name, _ in k}))


@functools.cache
def _has_kernel(op_type: str, device_type: str, types: tuple) -> bool:
    """`types`: the node's types for the attrs in _constrained_attrs (None where unset)."""
    given = dict(zip(_constrained_attrs(op_type, device_type), types, strict=True))
    for constraints in _kernel_constraints(op_type, device_type):
        if all(given[name] is None or given[name] in allowed for name, allowed in constraints):
            return True
    return False
