"""The updates: writes of variables whose value carries gradients, and the step that runs them."""

from __future__ import annotations

from . import opdefs
from .errors import InvalidGraphError
from .functions import Library
from .gradient_dataflow import OutputTypes, carried_nodes, data_ancestors
from .gradient_types import Backward, Update
from .ir.graph import Graph
from .post_processing import refuse_unread_autodiff
from .variable_access import readers, resolve_variable, writes


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
        refuse_unread_autodiff(graph, [u.name for u in out], nodes)
        return out, {u.var for u in out}, _step(graph, [u.name for u in out], variables)

    forward_read = {v for v in data_ancestors(graph, nodes, stop=variables.__contains__) if v in variables}
    types = backward.types or OutputTypes(graph)
    derived: set[str] = set()  # variables only updates write and read: accumulators, slots
    carried = carried_nodes(graph, backward.valued, types)
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
        carried |= carried_nodes(graph, reads, types)
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
    refuse_unread_autodiff(graph, order, nodes)
    return updates, forward_read, step


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
