"""What a single-tower training graph is: its inputs, variables and their state, apply ops, raw
gradients, global step, init and train ops — found from the graph's structure alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import dtypes

from . import gradients, opdefs
from .errors import InvalidGraphError
from .ir import names, verify
from .ir.graph import Graph

INPUT_OPS = ("Placeholder", "PlaceholderWithDefault")
PASS_THROUGH_OPS = ("Identity", "RefIdentity")


@dataclass
class Variable:
    name: str
    op: str
    dtype: int
    shape: list[int] | None
    resource: bool
    trainable: bool = False
    slot_of: str | None = None
    role: str = "other"
    initializer: str | None = None
    reads: list[str] = field(default_factory=list)

    @property
    def num_elements(self) -> int | None:
        if self.shape is None or any(d < 0 for d in self.shape):
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        n = self.num_elements
        return 0 if n is None else n * dtypes.as_dtype(self.dtype).size


@dataclass
class Input:
    name: str
    op: str
    dtype: int
    shape: list[int] | None

    @property
    def batched(self) -> bool:
        return self.shape is None or len(self.shape) > 0

    @property
    def static_batch(self) -> int | None:
        if self.shape and self.shape[0] >= 0:
            return self.shape[0]
        return None


@dataclass
class TrainingGraph:
    """The analysis of one single-tower training graph."""

    inputs: list[Input]
    variables: dict[str, Variable]
    updates: list[gradients.Update]
    gradients: list[gradients.Gradient]
    gradient_scopes: list[str]
    global_step: str | None
    train_ops: list[str]
    init_ops: list[str]
    global_step_increment: str | None = None

    @property
    def batched_inputs(self) -> list[Input]:
        return [i for i in self.inputs if i.batched]

    @property
    def trainable(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.trainable]

    @property
    def replicated_state(self) -> list[str]:
        """Trainable variables and their slots: what replicated mode copies per tower."""
        return [v.name for v in self.variables.values() if v.trainable or v.slot_of]

    def gradient(self, tensor: str) -> gradients.Gradient | None:
        return next((g for g in self.gradients if g.tensor == tensor), None)


def _shape_of(node) -> list[int] | None:
    attr = node.attr.get("shape")
    if attr is None or attr.shape.unknown_rank:
        return None
    return [d.size for d in attr.shape.dim]


def analyze(graph: Graph, describe: bool = True) -> TrainingGraph:
    """Analyse a single-tower training graph. Without `describe`, the parts only reports use are
    left out (variable roles, initializers and readers, the global step, train and init ops).

    Raises:
        InvalidGraphError: unknown op types, no optimizer apply ops (an inference graph), no
            variables, or an update graphpass cannot map to a variable.
    """
    verify.validate_input(graph)
    graph.check_acyclic()
    variables: dict[str, Variable] = {}
    for node in graph.nodes():
        if opdefs.is_variable_op(node.op):
            dtype = opdefs.dtype_attr(node, "dtype")
            variables[node.name] = Variable(
                node.name, node.op, dtype, _shape_of(node), opdefs.is_resource_variable_op(node.op)
            )
    if not variables:
        raise InvalidGraphError("the graph has no variables, so there is nothing to train")

    scopes = gradients.gradient_scopes(graph)
    backward = gradients.backward_nodes(graph, scopes)
    stray = next((v for v in variables if v in backward), None)
    if stray is not None:  # autodiff makes no variables: the scope is a user's, named alike
        scope = next(s for s in scopes if stray.startswith(s + "/"))
        raise InvalidGraphError(
            f"variable '{stray}' lies under '{scope}/', a scope named like TensorFlow's gradient "
            "scopes: graphpass cannot tell this graph's gradients apart (rename that scope)"
        )
    updates = gradients.find_updates(graph, variables, backward)
    if not updates:
        raise InvalidGraphError(
            "the graph has no optimizer updates (Apply* ops, or variables written from gradients): "
            "it looks like an inference graph; graphpass rewrites training graphs"
        )
    grads = gradients.find_gradients(graph, updates, backward)
    _classify(graph, variables, updates)
    position = {u.name: (i, u) for i, u in enumerate(updates)}
    for g in grads:  # name each gradient after the trained variable, not a slot it also feeds
        mine = sorted(position[n] for n in g.updates if n in position)
        owners = [variables[u.var].slot_of or u.var for _, u in mine]
        g.variable = next((v for v in owners if variables[v].trainable), g.variable)

    raw_nodes = {names.node_of(g.tensor) for g in grads}
    tower_side = graph.ancestors(raw_nodes, stop=lambda n: n in variables)
    inputs = [
        Input(n, graph.node(n).op, opdefs.dtype_attr(graph.node(n), "dtype"), _shape_of(graph.node(n)))
        for n in graph.names()
        if n in tower_side and graph.node(n).op in INPUT_OPS
    ]
    info = TrainingGraph(inputs, variables, updates, grads, scopes, None, [], [])
    if describe:
        update_names = [u.name for u in updates]
        after_update = graph.descendants(update_names)
        info.global_step, info.global_step_increment = _global_step(graph, variables, after_update)
        _describe_variables(graph, variables, updates, after_update, info.global_step)
        info.train_ops = _sinks(graph, after_update, update_names)
        info.init_ops = _init_ops(graph, variables, after_update)
    return info


def _classify(graph: Graph, variables: dict[str, Variable], updates) -> None:
    """Trainable variables and slots: an apply op says which is which; for other updates a
    variable colocated with another (TensorFlow creates slots that way) is that one's slot."""
    for u in updates:
        for s in u.state:
            variables[s].slot_of = variables[s].slot_of or u.var
    for u in updates:
        v = variables[u.var]
        if v.slot_of:
            continue
        owner = next((t for t in graph.colocation(v.name) if t in variables and t != v.name), None)
        if owner is not None:
            v.slot_of = owner
        else:
            v.trainable = True
    for v in variables.values():
        if v.trainable and v.slot_of:
            raise InvalidGraphError(f"variable '{v.name}' is both trained and used as optimizer state")


def _describe_variables(graph, variables, updates, after_update, step) -> None:
    """Role, initializer and readers of every variable.

    Roles: trainable (updated by an apply op), slot (optimizer state an apply op updates),
    optimizer (read by apply ops, written after them: Adam's beta powers), step, other.
    """
    upstream = graph.ancestors([u.name for u in updates], stop=lambda n: n in variables)
    read_by_applies = {n for n in upstream if n in variables}
    reads_any_variable = graph.descendants(list(variables))
    for v in variables.values():
        if v.trainable:
            v.role = "trainable"
        elif v.slot_of:
            v.role = "slot"
        elif v.name == step:
            v.role = "step"
        elif v.name in read_by_applies and any(
            u in after_update and v.name in _written(graph.node(u)) for u in graph.users(v.name)
        ):
            v.role = "optimizer"
        for user in graph.users(v.name):
            node = graph.node(user)
            if v.name in _written(node):
                values = [p for p in graph.input_nodes(user) if p != v.name]
                if (
                    user not in after_update
                    and v.initializer is None
                    and not any(p in reads_any_variable for p in values)
                ):
                    v.initializer = user
            elif opdefs.takes_state_from(node, v.name) or node.op in PASS_THROUGH_OPS:
                v.reads.append(user)


def _written(node) -> set[str]:
    return {names.node_of(node.input[p]) for p in opdefs.written_inputs(node.op) if p < len(node.input)}


INT_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)


def _global_step(
    graph: Graph, variables: dict[str, Variable], after_update: set[str]
) -> tuple[str | None, str | None]:
    """The integer scalar variable written once the updates are done (the step counter), and
    the node that increments it."""
    for v in variables.values():
        if v.trainable or v.slot_of or v.dtype not in INT_TYPES or v.shape != []:
            continue
        for user in graph.users(v.name):
            if user in after_update and v.name in _written(graph.node(user)):
                return v.name, user
    return None, None


def _sinks(graph: Graph, region: set[str], required: list[str]) -> list[str]:
    """Nodes of `region` nobody reads that depend on every one of `required` and do something
    (no-ops, writes): the train ops. Reads of updated values left dangling are not."""
    common: set[str] | None = None
    for r in required:  # what runs after every update (each update's downstream is small)
        after = graph.descendants([r])
        common = after if common is None else common & after
    out = []
    for n in graph.names():
        node = graph.node(n)
        if n in (common or ()) and n in region and not graph.users(n):
            if node.op == "NoOp" or opdefs.written_inputs(node.op):
                out.append(n)
    return out


def _init_ops(graph: Graph, variables: dict[str, Variable], after_update: set[str]) -> list[str]:
    """Unused no-op nodes outside the training step that run an initializing write of every variable."""
    out = []
    for n in graph.names():
        node = graph.node(n)
        if node.op != "NoOp" or n in after_update or graph.users(n):
            continue
        written = set()
        for a in graph.ancestors([n]):
            an = graph.node(a)
            for pos in opdefs.written_inputs(an.op):
                if pos < len(an.input):
                    v = names.node_of(an.input[pos])
                    if v in variables:
                        written.add(v)
        if written and written >= set(variables):
            out.append(n)
    return out
