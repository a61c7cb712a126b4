"""What a single-tower training graph is: its inputs, variables and their state, apply ops, raw
gradients, global step, init and train ops — found from the graph's structure alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import dtypes

from . import gradients, opdefs
from .errors import InvalidGraphError
from .functions import Library
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
    updated: bool = False  # written by an update (so, in replicated mode, copied per tower)

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
    backward: gradients.Backward = field(default_factory=lambda: gradients.Backward([], set()))
    library: Library | None = field(default=None, repr=False)
    step: set[str] = field(default_factory=set, repr=False)  # the nodes a train step runs

    @property
    def trainable(self) -> list[str]:
        return [v.name for v in self.variables.values() if v.trainable]

    @property
    def replicated_state(self) -> list[str]:
        """Trainable variables, their slots and whatever else updates write (accumulators, and the
        state a call writes with them): what replicated mode copies per tower."""
        return [v.name for v in self.variables.values() if v.trainable or v.slot_of or v.updated]

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

    library = Library(graph.library)
    backward = gradients.find_backward(graph, variables, library)
    updates, forward_read, step = gradients.find_updates(graph, variables, backward, library)
    if not updates:
        raise InvalidGraphError(
            "the graph has no optimizer updates (Apply* ops, or variables written from gradients): "
            "it looks like an inference graph; graphpass rewrites training graphs"
        )
    grads = gradients.find_gradients(graph, updates, backward, library)
    gradients.check_cut(graph, backward, grads)
    _classify(graph, variables, updates, forward_read, library)
    position = {u.name: (i, u) for i, u in enumerate(updates)}
    for g in grads:  # name each gradient after the trained variable, not a slot it also feeds
        mine = sorted(position[n] for n in g.updates if n in position)
        owners = [u.grad_targets.get(g.tensor) or variables[u.var].slot_of or u.var for _, u in mine]
        g.variable = next((v for v in owners if variables[v].trainable), g.variable)

    raw_nodes = {names.node_of(g.tensor) for g in grads}
    tower_side = graph.ancestors(raw_nodes, stop=lambda n: n in variables)
    inputs = [
        Input(n, graph.node(n).op, opdefs.dtype_attr(graph.node(n), "dtype"), _shape_of(graph.node(n)))
        for n in graph.names()
        if n in tower_side and graph.node(n).op in INPUT_OPS
    ]
    info = TrainingGraph(
        inputs,
        variables,
        updates,
        grads,
        backward.scopes,
        None,
        [],
        [],
        backward=backward,
        library=library,
        step=step,
    )
    if describe:
        update_names = [u.name for u in updates]
        after_update = graph.descendants(update_names)
        info.global_step, info.global_step_increment = _global_step(
            graph, variables, after_update, step, library
        )
        _describe_variables(graph, variables, updates, after_update, info.global_step, library)
        info.train_ops = _sinks(graph, after_update, update_names, library)
        info.init_ops = _init_ops(graph, variables, after_update, library)
    return info


def _classify(graph: Graph, variables: dict[str, Variable], updates, forward_read, library) -> None:
    """Trainable variables and slots. An apply op says which is which; of the other variables an
    update writes, those the forward pass reads are trained, the others are state: the slot of
    the one trained variable whose update their value reaches (an accumulator, a hand-written
    Adam moment), or of the variable they are colocated with (TensorFlow creates slots that way)."""
    for u in updates:
        for v in (u.var, *u.state):
            variables[v].updated = True
        if opdefs.apply_signature(u.op) is not None:
            for s in u.state:
                variables[s].slot_of = variables[s].slot_of or u.var
    by_name = {u.name: u for u in updates}
    for u in updates:
        apply = opdefs.apply_signature(u.op) is not None
        for name in (u.var,) if apply else (u.var, *u.state):
            v = variables[name]
            if v.slot_of or v.trainable:
                continue
            if apply or name in forward_read:
                v.trainable = True
                continue
            owner = _owner(graph, name, by_name, forward_read, library)
            if owner is None and not u.targets:
                owner = next((t for t in graph.colocation(name) if t in variables and t != name), None)
            v.slot_of = owner
    for v in variables.values():
        if v.trainable and v.slot_of:
            raise InvalidGraphError(f"variable '{v.name}' is both trained and used as optimizer state")


def _owner(graph: Graph, var: str, updates: dict, forward_read, library) -> str | None:
    """The one trained variable whose update the value of state variable `var` reaches: through
    the data its readers compute, into an update of that variable or a call that writes it."""
    found: set[str] = set()
    seen = {var}
    stack = [var]
    while stack:
        n = stack.pop()
        for user in graph.users(n):
            if user in seen or n not in graph.producers(user)[0]:
                continue
            seen.add(user)
            u = updates.get(user)
            if u is None:
                stack.append(user)
            elif u.targets:  # a call: where the inputs holding `var`'s value flow inside it
                node = graph.node(user)
                flows = library.flows(node)
                for i, p in enumerate(graph.producers(user)[0]):
                    if p in seen:
                        for pos in flows.get(i, ()):
                            v = gradients.resolve_variable(graph, node.input[pos], forward_read)
                            if v is not None:
                                found.add(v)
            elif u.var in forward_read:
                found.add(u.var)
    return found.pop() if len(found) == 1 else None


def _describe_variables(graph, variables, updates, after_update, step, library) -> None:
    """Role, initializer and readers of every variable.

    Roles: trainable (updated from gradients, read by the forward pass), slot (optimizer state
    updates write: slots, accumulators), step, state (other variables updates write, such as
    what a call around apply ops writes with them), optimizer (read by apply ops, written after
    them: Adam's beta powers), other.
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
        elif v.updated:
            v.role = "state"
        elif v.name in read_by_applies and any(
            u in after_update and v.name in _written(graph.node(u), library) for u in graph.users(v.name)
        ):
            v.role = "optimizer"
        for user in graph.users(v.name):
            node = graph.node(user)
            if v.name in _written(node, library):
                values = [p for p in graph.input_nodes(user) if p != v.name]
                if (
                    user not in after_update
                    and v.initializer is None
                    and not any(p in reads_any_variable for p in values)
                ):
                    v.initializer = user
            elif opdefs.takes_state_from(node, v.name) or node.op in PASS_THROUGH_OPS:
                v.reads.append(user)


def _written(node, library: Library) -> set[str]:
    return {
        names.node_of(node.input[p])
        for p in gradients.written_positions(node, library)
        if p < len(node.input)
    }


INT_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)


def _global_step(
    graph: Graph, variables: dict[str, Variable], after_update: set[str], step: set[str], library: Library
) -> tuple[str | None, str | None]:
    """The step counter: an integer scalar variable that the step increments by a constant (else
    writes otherwise), once the updates are done (else unordered against them: BERT's separate
    increment); and its increment."""
    for adds in (True, False):
        for region in (after_update, step):
            for v in variables.values():
                if v.trainable or v.slot_of or v.dtype not in INT_TYPES or v.shape != []:
                    continue
                for user in gradients.readers(graph, v.name):
                    if (
                        user in region
                        and (not adds or _adds_constant(graph, user))
                        and v.name in gradients.written_variables(graph, user, variables, library)
                    ):
                        return v.name, user
    return None, None


def _adds_constant(graph: Graph, name: str) -> bool:
    node = graph.node(name)
    data = graph.producers(name)[0]
    return (
        node.op in ("AssignAdd", "AssignAddVariableOp")
        and len(data) == 2
        and graph.node(data[1]).op == "Const"
    )


def _sinks(graph: Graph, region: set[str], required: list[str], library: Library) -> list[str]:
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
            if node.op == "NoOp" or gradients.written_positions(node, library):
                out.append(n)
    return out


def _init_ops(
    graph: Graph, variables: dict[str, Variable], after_update: set[str], library: Library
) -> list[str]:
    """Unused no-op nodes outside the training step that run an initializing write of every variable."""
    out = []
    for n in graph.names():
        node = graph.node(n)
        if node.op != "NoOp" or n in after_update or graph.users(n):
            continue
        written = set()
        for a in graph.ancestors([n]):
            an = graph.node(a)
            for pos in gradients.written_positions(an, library):
                if pos < len(an.input):
                    v = names.node_of(an.input[pos])
                    if v in variables:
                        written.add(v)
        if written and written >= set(variables):
            out.append(n)
    return out
