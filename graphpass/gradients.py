"""Where the gradient computation is: the backward pass, the updates that consume gradients, and
the raw gradient tensors that must be reduced across towers before anything else reads them.

The backward pass. TensorFlow's autodiff builds the ops that differentiate forward op `F` under
`S/<F>_grad/` (tf.gradients' scope `S`, `gradients` by default) and `GradientTape`'s under
`S/gradient_tape/`. A graph that went through `tf.import_graph_def` or a renamed scope has the
same shape with other names (`import/gradients/dense/MatMul_grad/...` differentiates
`import/dense/MatMul`), so a scope is read from how its names relate to the forward ops, at any
prefix, and kept only if the dataflow agrees: autodiff makes no variables and writes none, and no
forward op it differentiates lies inside, or is computed from, the backward pass. Readings the
dataflow refutes are dropped and said so (`Backward.notes`).

The updates. A write of a variable is an update when the value it writes carries gradients: a
float data path from the backward pass (a predicate, a count or a shape derived from gradients
carries none, so a loss scale or a step counter is state, never a gradient target), or from a
variable that only updates write and read (an accumulator of gradients, an optimizer slot).
Writes hidden in called functions (the apply ops in a v2 `tf.cond`'s branch) count as writes of
the calling node. The raw gradients are the backward tensors nearest to the updates: the reads of
the backward pass by post-processing (clipping, scaling, casting, the de-duplication of sparse
gradients) or by the updates themselves. Sparse gradients (IndexedSlices) cross that boundary as
a values tensor and an integer indices tensor.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from tensorflow.core.framework import types_pb2
from tensorflow.python.framework import dtypes

from . import opdefs
from .errors import InvalidGraphError
from .functions import Library, called
from .ir import names
from .ir.graph import Graph

GRAD_MARK = "_grad/"
TAPE_SCOPE = "gradient_tape"
INDEX_TYPES = (types_pb2.DT_INT32, types_pb2.DT_INT64)
CARRYING_TYPES = frozenset(
    t
    for t in types_pb2.DataType.values()
    if t not in (types_pb2.DT_INVALID,)
    and t < 100
    and (dtypes.as_dtype(t).is_floating or dtypes.as_dtype(t).is_complex)
)
# Ops that compute on a gradient in ways the reduction does not commute with (norms, finiteness
# checks, clipping by value). Autodiff applies them to forward values only, never to gradients.
NONLINEAR_OPS = frozenset(
    {"L2Loss", "Square", "Sqrt", "EuclideanNorm", "IsFinite", "IsNan", "IsInf", "ClipByValue"}
)
MULTIPLY_OPS = frozenset({"Mul", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"})


@dataclass
class Backward:
    """The backward pass: its scopes (with how each was recognised) and nodes."""

    scopes: list[str]
    nodes: set[str]
    kinds: dict[str, str] = field(default_factory=dict)  # scope -> "autodiff" | "tape"
    notes: list[str] = field(default_factory=list)  # readings refused, and why
    constant: set[str] = field(default_factory=set)  # its float nodes computed from no forward value
    valued: set[str] = field(default_factory=set)  # the others: the gradients it computes
    types: _Types | None = field(default=None, repr=False)  # output types, read once per analysis

    def exact(self, node: str) -> bool:
        """Whether `node` lies in a scope recognised from the forward ops it differentiates (not
        merely named `gradient_tape`)."""
        return node in self.nodes and any(
            node.startswith(s + "/") and self.kinds.get(s) == "autodiff" for s in self.scopes
        )


def _readings(head: str, graph: Graph):
    """(scope S, forward op F) pairs that `head` = `S/X` can mean: F = P + X is a node for a
    prefix P of S (empty or ending at a scope boundary), and F does not lie under S."""
    slashes = [j for j, c in enumerate(head) if c == "/"]
    for a, j in enumerate(slashes):
        scope, x = head[:j], head[j + 1 :]
        for p in [""] + [head[: m + 1] for m in slashes[:a]]:
            f = p + x
            if f in graph and not f.startswith(scope + "/"):
                yield scope, f


class _Sorted:
    """Node names in sorted order, to list the nodes under a scope."""

    def __init__(self, graph: Graph):
        self.names = sorted(graph)

    def under(self, scope: str) -> list[str]:
        lo = bisect.bisect_left(self.names, scope + "/")
        hi = bisect.bisect_left(self.names, scope + "0")  # "0" follows "/"
        return self.names[lo:hi]


def find_backward(graph: Graph, variables, library: Library) -> Backward:
    """The backward pass of `graph` (see the module docstring)."""
    readings: dict[str, set[str]] = {}
    tapes: set[str] = set()
    heads: set[str] = set()
    for name in graph:
        i = name.find(GRAD_MARK)
        while i != -1:
            head = name[:i]
            if head not in heads:
                heads.add(head)
                for scope, f in _readings(head, graph):
                    readings.setdefault(scope, set()).add(f)
            i = name.find(GRAD_MARK, i + 1)
        k = name.find(TAPE_SCOPE + "/")
        if k != -1 and (k == 0 or name[k - 1] == "/"):
            tapes.add(name[: k + len(TAPE_SCOPE)])
    if not readings and not tapes:
        return Backward([], set())

    index = _Sorted(graph)
    types = _Types(graph)
    notes: list[str] = []
    kinds = {s: "autodiff" for s in readings} | {s: "tape" for s in tapes if s not in readings}
    valid: set[str] = set()
    members: dict[str, set[str]] = {}
    for scope in sorted(kinds):
        under = index.under(scope)
        reason = _refuted(graph, under, variables, library)
        if reason and kinds[scope] == "autodiff":
            # Other nodes under the scope (a user's scope named alike): keep what autodiff made
            core = _autodiff_core(graph, scope, under, variables, library, types)
            if core and not _refuted(graph, sorted(core), variables, library):
                notes.append(
                    f"'{scope}/' {reason.replace('holds', 'also holds')}: its {len(core)} nodes of "
                    f"autodiff's groups are read as the backward pass, its {len(under) - len(core)} others "
                    "as forward ops"
                )
                valid.add(scope)
                members[scope] = core
                continue
        if reason:
            notes.append(f"'{scope}/' is named like a gradient scope but {reason}: read as forward ops")
        else:
            valid.add(scope)
            members[scope] = set(under)
    # A scope holding forward ops that another scope differentiates is forward itself (a user's
    # scope named alike, or the first-order gradients of a graph that differentiates twice).
    forward = {f: s for s in sorted(valid) for f in readings.get(s, ())}
    for scope in sorted(valid):
        inside = next(
            (f for f, s in forward.items() if f.startswith(scope + "/") and not _nested(s, scope)), None
        )
        if inside is not None:
            notes.append(
                f"'{scope}/' is named like a gradient scope but holds '{inside}', a forward op that "
                f"'{forward[inside]}/' differentiates: read as forward ops"
            )
    valid = {
        s for s in valid if not any(f.startswith(s + "/") and not _nested(t, s) for f, t in forward.items())
    }
    scopes = sorted(s for s in valid if not any(s != o and s.startswith(o + "/") for o in valid))
    nodes = {n for s in scopes for n in members[s]}
    valued = _valued(graph, nodes, types)
    post = _post_processing_inside(graph, nodes, valued, types, notes)
    if post:
        nodes -= post
        valued = _valued(graph, nodes, types)
    # Autodiff reads the forward pass; the forward pass never reads a gradient. (It may read
    # what autodiff made for it that carries none: while_v2's accumulators, empty tensor lists
    # the forward loop fills for the gradient loop.)
    fwd = [f for s in scopes for f in readings.get(s, ()) if f not in nodes]
    feeding = _data_ancestors(graph, fwd, stop=nodes.__contains__) & nodes
    outside = lambda n: n not in nodes  # noqa: E731
    feeding = {
        n
        for n in feeding
        if any(a in nodes and types.carries(a) for a in _data_ancestors(graph, [n], stop=outside))
    }
    if feeding:
        n = min(feeding)
        raise InvalidGraphError(
            f"node '{n}' lies in '{_scope_of(n, scopes)}/', read as the backward pass, but forward ops "
            "read it: graphpass cannot tell this graph's gradients apart (rename that scope)"
        )
    constant = {n for n in nodes if n not in valued and types.carries(n)}
    return Backward(scopes, nodes, {s: kinds[s] for s in scopes}, notes, constant, valued, types)


AGGREGATING_OPS = frozenset({"AddN", "AddV2", "Add", "Identity"})


def _post_processing_inside(
    graph: Graph, nodes: set[str], valued: set[str], types: _Types, notes: list[str]
) -> set[str]:
    """Nodes read as the backward pass that compute on what was computed from its gradients
    outside it (clipping by a global norm taken outside, renamed into the gradient scope):
    autodiff only reads forward values and its own, so they are post-processing."""
    outside: set[str] = set()  # computed from gradients, outside the backward pass
    stack = list(valued)
    while stack:
        for user in graph.users(stack.pop()):
            if user not in nodes and user not in outside and types.carries(user):
                outside.add(user)
                stack.append(user)
    post: set[str] = set()
    stack = sorted(n for n in nodes if any(p in outside for p in graph.producers(n)[0]))
    while stack:
        n = stack.pop()
        if n in post:
            continue
        post.add(n)
        stack.extend(u for u in graph.users(n) if u in nodes and n in graph.producers(u)[0])
    if post:
        entry = min(n for n in post if any(p in outside for p in graph.producers(n)[0]))
        via = min(p for p in graph.producers(entry)[0] if p in outside)
        notes.append(
            f"'{entry}' and {len(post) - 1} more nodes named like the backward pass read '{via}', computed "
            "from its gradients outside it: read as post-processing"
        )
    return post


def _autodiff_core(graph: Graph, name: str, under: list[str], variables, library, types: _Types) -> set[str]:
    """The nodes under a scope that autodiff made, where the scope holds others too: its
    `X_grad/` groups (those whose forward op has been renamed since included); the seed and
    shapes they read (nodes under the scope that read no float from outside it); and the sums
    of gradients between groups (AddN of what they compute). None of them a variable or a write."""
    core = {n for n in under if GRAD_MARK in n[len(name) + 1 :]}
    scope = set(under)
    pool = scope - core
    plain = {n for n in pool if n not in variables and not writes(graph, n, variables, library)}

    def seedlike(n: str) -> bool:
        node = graph.node(n)
        return all(
            p in scope or types.tensor(node.input[i]) not in CARRYING_TYPES
            for i, p in enumerate(graph.producers(n)[0])
        )

    stack = list(core)
    while stack:
        for p in graph.producers(stack.pop())[0]:
            if p in plain and p not in core and seedlike(p):
                core.add(p)
                stack.append(p)
    changed = True
    while changed:
        changed = False
        for n in sorted(plain - core):
            data = graph.producers(n)[0]
            if graph.node(n).op in AGGREGATING_OPS and data and all(p in core for p in data):
                core.add(n)
                changed = True
    return core


def _nested(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer + "/")


def _scope_of(node: str, scopes: list[str]) -> str:
    return next(s for s in scopes if node.startswith(s + "/"))


def _refuted(graph: Graph, under: list[str], variables, library: Library) -> str | None:
    """Why the nodes `under` a scope cannot be autodiff's, or None."""
    for n in under:
        if n in variables:
            return f"holds variable '{n}' (autodiff makes no variables)"
    for n in under:
        if any(v in variables for _, v in writes(graph, n, variables, library)):
            return f"holds '{n}', which writes a variable (autodiff writes none)"
    for n in under:
        v = _reads_variable(graph, n, variables, library)
        if v is not None:
            return f"holds '{n}', which reads variable '{v}' (autodiff reads forward values, not variables)"
    return None


def _reads_variable(graph: Graph, n: str, variables, library: Library) -> str | None:
    """The variable op `n` (not a call) reads at a resource input, if any."""
    node = graph.node(n)
    if library and called(node, library.names):
        return None
    for p in graph.producers(n)[0]:
        v = resolve_variable(graph, p, variables)
        if v is not None and opdefs.takes_state_from(node, p):
            return v
    return None


def _data_ancestors(graph: Graph, roots, stop=None) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if stop is not None and stop(n):
            continue
        stack.extend(graph.producers(n)[0])
    return seen


# -- writes ------------------------------------------------------------------------------------
# Ops that hand on their first input's ref or resource: identities, and v1 control flow's
# conditional and loop-entry forwarding (a variable written inside tf.cond or a while loop).
HANDLE_THROUGH = frozenset({"Identity", "RefIdentity", "Switch", "RefSwitch", "Enter", "RefEnter"})


def resolve_variable(graph: Graph, ref: str, variables) -> str | None:
    """The variable a ref/resource input comes from, through identities and v1 control flow."""
    node = names.node_of(ref)
    for _ in range(64):
        if node in variables:
            return node
        n = graph.node(node)
        if n.op not in HANDLE_THROUGH or not n.input:
            return None
        node = names.node_of(n.input[0])
    return None


def readers(graph: Graph, var: str) -> list[str]:
    """The nodes that take variable `var` (its ref or handle) as a data input, through the
    identities and v1 control flow that hand it on, sorted: its reads and writes."""
    found: set[str] = set()
    seen = {var}
    stack = [var]
    while stack:
        n = stack.pop()
        for user in graph.users(n):
            if user in seen or n not in graph.producers(user)[0]:
                continue
            seen.add(user)
            node = graph.node(user)
            if node.op in HANDLE_THROUGH and names.node_of(node.input[0]) == n:
                stack.append(user)
            else:
                found.add(user)
    return sorted(found)


def written_positions(node, library: Library) -> tuple[int, ...]:
    """Input positions whose variable `node` writes, itself or in the functions it calls."""
    own = opdefs.written_inputs(node.op)
    if own or not library:
        return own
    return library.written_inputs(node)


def writes(graph: Graph, name: str, variables, library: Library) -> list[tuple[int, str]]:
    """(input position, variable) for each variable node `name` writes."""
    node = graph.node(name)
    out = []
    for pos in written_positions(node, library):
        if pos < len(node.input):
            v = resolve_variable(graph, node.input[pos], variables)
            if v is not None and all(v != w for _, w in out):
                out.append((pos, v))
    return out


def written_variables(graph: Graph, name: str, variables, library: Library) -> list[str]:
    """The variables node `name` modifies (through its ref or resource inputs)."""
    return [v for _, v in writes(graph, name, variables, library)]


# -- updates -----------------------------------------------------------------------------------
@dataclass
class Update:
    """A node that writes a variable from gradients: an optimizer apply op, a scatter, an assign,
    or a call whose function does (a v2 cond around apply ops)."""

    name: str
    op: str
    var: str
    state: list[str]
    sparse: bool
    grads: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    # For calls: the variable each gradient input position feeds, where the function says.
    targets: dict[int, str] = field(default_factory=dict)
    grad_targets: dict[str, str] = field(default_factory=dict)  # raw gradient -> variable


@dataclass
class Gradient:
    """A raw gradient tensor: dense, or the values or indices of a sparse (IndexedSlices) one."""

    tensor: str
    kind: str
    variable: str
    updates: list[str] = field(default_factory=list)


class _Types:
    """Output types of nodes, read once."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._types: dict[str, list[int]] = {}

    def of(self, name: str) -> list[int]:
        t = self._types.get(name)
        if t is None:
            t = self._types[name] = opdefs.output_types(self.graph.node(name))
        return t

    def carries(self, name: str) -> bool:
        return any(t in CARRYING_TYPES for t in self.of(name))

    def tensor(self, ref: str) -> int:
        r = names.parse(ref)
        types = self.of(r.node)
        return types[r.index] if r.index < len(types) else types[-1]


def _valued(graph: Graph, nodes: set[str], types: _Types) -> set[str]:
    """The nodes of the backward pass whose float value depends on a forward value: they read a
    float from outside it, or such a node. Its seed (ones in the loss's shape), shapes and
    constants do not: a constant under a scope named like a gradient scope carries no gradient."""
    out: set[str] = set()
    order = [n for n in graph.names() if n in nodes]
    changed = True
    while changed:  # in graph order: once, and once more to see it settled (more around loops)
        changed = False
        for n in order:
            if n in out or not types.carries(n):
                continue
            node = graph.node(n)
            for i, p in enumerate(graph.producers(n)[0]):
                if (p in out or p not in nodes) and types.tensor(node.input[i]) in CARRYING_TYPES:
                    out.add(n)
                    changed = True
                    break
    return out


def _carried(graph: Graph, sources, types: _Types, within: set[str] | None = None) -> set[str]:
    """Nodes whose float outputs carry what `sources` compute: `sources` with float outputs and
    the nodes with float outputs they reach over float data edges (inside `within`, if given)."""
    out: set[str] = set()
    stack = [s for s in sources if types.carries(s)]
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        for user in graph.users(n):
            if user in out or (within is not None and user not in within) or not types.carries(user):
                continue
            node = graph.node(user)
            data = graph.producers(user)[0]
            if any(p == n and types.tensor(node.input[i]) in CARRYING_TYPES for i, p in enumerate(data)):
                stack.append(user)
    return out


def find_updates(
    graph: Graph, variables, backward: Backward, library: Library
) -> tuple[list[Update], set[str], set[str]]:
    """Writes whose value carries gradients, in graph order; the variables the forward pass
    reads (the ones that have gradients); and the step: the nodes that run for the ends of
    what those writes start (the train ops).

    Without a backward pass (a hand-built graph) the optimizer apply ops are the updates.
    """
    writers: dict[str, list[tuple[int, str]]] = {}
    for name in graph:
        w = writes(graph, name, variables, library)
        if w:
            writers[name] = w
    nodes = backward.nodes
    if not nodes:
        out = [
            _update(graph, n, writers[n], variables, library, set(variables))
            for n in graph.names()
            if n in writers and opdefs.apply_signature(graph.node(n).op) is not None
        ]
        _refuse_unread_autodiff(graph, [u.name for u in out], nodes)
        return out, {u.var for u in out}, _step(graph, [u.name for u in out], variables)

    forward_read = {v for v in _data_ancestors(graph, nodes, stop=variables.__contains__) if v in variables}
    types = backward.types or _Types(graph)
    derived: set[str] = set()  # variables only updates write and read: accumulators, slots
    carried = _carried(graph, backward.valued, types)
    from_backward = graph.descendants(nodes, through_control=False)
    found = {
        w
        for w, written in writers.items()
        if _takes_gradients(graph, w, written, carried, derived, library)
        # an optimizer's apply op on a gradient computed from the seed and shapes alone
        or (opdefs.apply_signature(graph.node(w).op) is not None and w in from_backward)
    }
    # The step: what runs for the ends of what the writes from gradients start (the train ops).
    # Writes that take a value from an accumulator are updates when the step runs them; a
    # write elsewhere (a user's assign of a slot, run on its own) is not.
    step = _step(graph, sorted(found), variables)
    new = found
    while True:
        more = {v for w in new for _, v in writers[w] if v not in forward_read} - derived
        derived |= more
        reads = {u for v in more for u in readers(graph, v) if u not in writers} - carried
        carried |= _carried(graph, reads, types)
        new = {
            w
            for w, written in writers.items()
            if w not in found and w in step and _takes_gradients(graph, w, written, carried, derived, library)
        }
        if not new:
            break
        found |= new
    order = [n for n in graph.names() if n in found]
    updates = [_update(graph, n, writers[n], variables, library, forward_read) for n in order]
    _refuse_unread_autodiff(graph, order, nodes)
    return updates, forward_read, step


def _refuse_unread_autodiff(graph: Graph, updates: list[str], backward: set[str]) -> None:
    """Refuse a graph where nodes named like autodiff's (`X_grad/`, `gradient_tape/`) feed the
    updates but were not read as the backward pass (their names no longer match the forward ops,
    or a scope is read as a gradient scope they are not under): graphpass could not tell where
    the gradients end, and a reduction after post-processing would train a different model."""
    upstream = graph.ancestors(updates)
    named = sorted(
        n
        for n in upstream
        if n not in backward and (GRAD_MARK in n or n.startswith(TAPE_SCOPE + "/") or f"/{TAPE_SCOPE}/" in n)
    )
    if named:
        raise InvalidGraphError(
            f"node '{named[0]}' is named like TensorFlow's gradient ops but is not in the backward pass "
            "graphpass can read from the names (its forward op renamed, or a scope named like a gradient "
            "scope): it cannot tell where the gradients end (keep tf.gradients' names, or rename the "
            "whole graph under one prefix)"
        )


def _step(graph: Graph, writes: list[str], variables) -> set[str]:
    """What runs for the nodes nobody reads downstream of `writes` (the train ops among them;
    not the reads of a variable left dangling, like the value an `assign_add` returns)."""
    after = graph.descendants(writes)
    ends = [
        n
        for n in after
        if not graph.users(n)
        and not (
            graph.producers(n)[0]
            and all(resolve_variable(graph, r, variables) for r in graph.node(n).input if r[:1] != "^")
        )
    ]
    return graph.ancestors(ends)


def _takes_gradients(graph: Graph, w: str, written, carried: set[str], derived: set[str], library) -> bool:
    """Whether writer `w` writes a value that carries gradients: a carrying data input other than
    the variables it writes, or (a call) a derived variable whose value reaches another write."""
    node = graph.node(w)
    positions = {p for p, _ in written}
    data = graph.producers(w)[0]
    if any(p in carried and i not in positions for i, p in enumerate(data)):
        return True
    if derived and library and not opdefs.written_inputs(node.op):
        flows = library.flows(node)
        for i, ref in enumerate(node.input[: len(data)]):
            if resolve_variable(graph, ref, derived) is not None and flows.get(i, frozenset()) - {i}:
                return True
    return False


def _update(graph, name, written, variables, library, forward_read) -> Update:
    node = graph.node(name)
    sig = opdefs.apply_signature(node.op)
    if sig is not None:
        var = resolve_variable(graph, node.input[sig.var], variables)
        state = [resolve_variable(graph, node.input[i], variables) for i in sig.state]
        if var is None or None in state:
            raise InvalidGraphError(
                f"apply op '{name}' ({node.op}) does not update a variable graphpass can find"
            )
        return Update(name, node.op, var, state, sig.sparse)
    wrote = [v for _, v in written]
    if not opdefs.written_inputs(node.op) and library:  # a call: which input feeds which write
        first = next((v for v in wrote if v in forward_read), wrote[0])
        by_pos = dict(written)
        targets = {}
        for pos, reached in library.flows(node).items():
            hit = [by_pos[p] for p in sorted(reached) if p in by_pos]
            own = [v for v in hit if v in forward_read]
            if hit:
                targets[pos] = (own or hit)[0]
        return Update(name, node.op, first, [v for v in wrote if v != first], False, targets=targets)
    return Update(name, node.op, wrote[0], wrote[1:], _has_index_input(graph, name))


def _has_index_input(graph: Graph, name: str) -> bool:
    return "indices" in opdefs.input_arg_positions(graph.node(name))


def _gradient_inputs(graph: Graph, update: Update, library: Library) -> list[tuple[int, str]]:
    """(position, input) of the data inputs of an update that can carry gradients: all but the
    variables it writes (and an apply op's slots); of a call, only float inputs (its predicate
    or branch index carries none)."""
    node = graph.node(update.name)
    state = set(written_positions(node, library))
    sig = opdefs.apply_signature(node.op)
    if sig is not None:
        state |= {sig.var, *sig.state}
    call = sig is None and not opdefs.written_inputs(node.op)
    out = []
    for pos, r in enumerate(node.input):
        if r.startswith("^") or pos in state:
            continue
        if call and _dtype(graph, _tensor(r)) not in CARRYING_TYPES:
            continue
        out.append((pos, r))
    return out


def find_gradients(
    graph: Graph, updates: list[Update], backward: Backward, library: Library
) -> list[Gradient]:
    """Every backward tensor read outside the backward pass on the way to an update.

    Each update's nearest backward tensors (breadth first from its gradient inputs) name the
    variable a gradient belongs to; tensors only reachable further away (the gradients a global
    norm mixes in, say) are attributed by those nearer updates. Integer tensors that travel with
    values are the indices of sparse gradients.
    """
    nodes = backward.nodes
    if not nodes:
        grads = []
        for u in updates:
            for _, ref in _gradient_inputs(graph, u, library):
                t = _tensor(ref)
                u.grads.append(t)
                kind = "indices" if _dtype(graph, t) in INDEX_TYPES else "values" if u.sparse else "dense"
                grads.append(Gradient(t, kind, u.var, [u.name]))
        return _merge(grads)

    found: dict[str, Gradient] = {}
    for u in updates:
        for pos, ref in _gradient_inputs(graph, u, library):
            nearest, post = _nearest_backward(graph, _tensor(ref), nodes)
            u.post.extend(t for t in post if t not in u.post)
            u.grads.extend(t for t in nearest if t not in u.grads)
            if pos in u.targets:
                for t in nearest:
                    u.grad_targets.setdefault(t, u.targets[pos])
        for t in u.grads:
            g = found.setdefault(t, Gradient(t, "dense", u.grad_targets.get(t, u.var)))
            if u.name not in g.updates:
                g.updates.append(u.name)

    first = next((u for u in updates if u.grads), None)
    if first is None:
        return []
    region = _post_region(graph, [u.name for u in updates], nodes)
    owner_of: dict[str, Update] = {}  # the first update each post-processing node serves
    for u in updates:
        for t in u.post:
            owner_of.setdefault(t, u)
        owner_of.setdefault(u.name, u)
    for name in graph.names():
        if name not in region:
            continue
        for ref in graph.node(name).input:
            p = names.node_of(ref)
            if ref.startswith("^") or p not in nodes or p in backward.constant:
                continue
            t = _tensor(ref)
            if t not in found:
                owner = owner_of.get(name, first)
                found[t] = Gradient(t, "dense", owner.var, [owner.name])

    # Integer tensors are indices; float tensors that reach an update with an indices input are
    # the values of sparse gradients (they are gathered, not summed).
    sparse_reach = {t for u in updates if u.sparse for t in u.grads}
    for g in found.values():
        if _dtype(graph, g.tensor) in INDEX_TYPES:
            g.kind = "indices"
        elif g.tensor in sparse_reach:
            g.kind = "values"
    return list(found.values())


def check_cut(graph: Graph, backward: Backward, grads: list[Gradient]) -> None:
    """Refuse a reading whose raw gradients come after post-processing.

    Autodiff is linear in the gradients it propagates: it computes norms, finiteness checks and
    squares on forward values only. One of those applied to a gradient between where gradients
    enter the backward pass (its seed and constants: nodes that read no float tensor from
    outside it) and a raw gradient means the pass read as backward swallowed post-processing
    (a global norm, say), and reducing there would not give the single tower's step.
    """
    nodes = backward.nodes
    if not nodes or not grads:
        return
    types = backward.types or _Types(graph)
    cut = {names.node_of(g.tensor) for g in grads}
    inside = lambda n: n in nodes  # noqa: E731
    before = _data_ancestors(graph, cut, stop=lambda n: not inside(n)) & nodes
    seeds = set()
    for n in before:
        if not types.carries(n):
            continue
        node = graph.node(n)
        data = graph.producers(n)[0]
        if not any(
            p not in nodes and types.tensor(node.input[i]) in CARRYING_TYPES for i, p in enumerate(data)
        ):
            seeds.add(n)
    carried = _carried(graph, seeds, types, within=before)
    for n in sorted(carried):
        node = graph.node(n)
        data = graph.producers(n)[0]
        inputs = [_tensor(node.input[i]) for i, p in enumerate(data) if p in carried]
        if (node.op in NONLINEAR_OPS and inputs) or (
            node.op in MULTIPLY_OPS and len(inputs) == 2 and inputs[0] == inputs[1]
        ):
            g = next(
                g
                for g in grads
                if n in _data_ancestors(graph, [names.node_of(g.tensor)], stop=lambda m: not inside(m))
            )
            raise InvalidGraphError(
                f"node '{n}' ({node.op}) computes on gradients before '{g.tensor}', read as the raw "
                f"gradient of '{g.variable}': reducing there would come after post-processing, so "
                "graphpass cannot tell this graph's gradients apart"
            )


def _merge(grads: list[Gradient]) -> list[Gradient]:
    out: dict[str, Gradient] = {}
    for g in grads:
        if g.tensor in out:
            out[g.tensor].updates.extend(u for u in g.updates if u not in out[g.tensor].updates)
        else:
            out[g.tensor] = g
    return list(out.values())


def _tensor(ref: str) -> str:
    r = names.parse(ref)
    return names.tensor(r.node, r.index)


def _dtype(graph: Graph, tensor: str) -> int:
    r = names.parse(tensor)
    return opdefs.output_dtype(graph.node(r.node), r.index)


def _post_region(graph: Graph, updates: list[str], backward: set[str]) -> set[str]:
    """Non-backward nodes between the backward pass and the updates (the updates included)."""
    anc = graph.ancestors(updates, stop=lambda n: n in backward)
    return {n for n in anc if n not in backward}


def _nearest_backward(graph: Graph, grad: str, backward: set[str]) -> tuple[list[str], list[str]]:
    """Backward tensors nearest to `grad` (breadth first through other nodes), and the nodes walked."""
    layer = [grad]
    seen: set[str] = set()
    post: list[str] = []
    while layer:
        found: list[str] = []
        nxt: list[str] = []
        for ref in layer:
            producer = names.node_of(ref)
            if producer in backward:
                if ref not in found:
                    found.append(ref)
                continue
            if producer in seen:
                continue
            seen.add(producer)
            post.append(producer)
            nxt.extend(_tensor(r) for r in graph.node(producer).input if not r.startswith("^"))
        if found:
            return found, post
        layer = nxt
    return [], post
