"""Step state: the variables a training step reads and then writes (global step, slots, loss
scale, counters), and the control edges that make every such read run before the write.

In the single tower, a read that nothing orders against the write it precedes (BERT's learning
rate reads the global step that a separate `assign_add` advances) is ready at the start of the
step and wins the race in practice. In K towers there are K copies of the read, each on its own
schedule, and a late one sees the next step's value: towers compute different updates and
replicas drift apart. So before replicating, each read of a variable that the step writes, and
that neither precedes nor follows the write in the graph, is made a control input of the write:
every tower then sees the value from the start of the step, as the single tower does.

A read that can only be ordered by an edge TensorFlow rejects or that would change what runs
(inside a v1 while loop, or in a v1 cond branch the write is not in: a dead control input would
kill the write) is left as it is and named in a note; so is one whose edge would close a cycle.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import reduce
from operator import or_

from . import gradients
from .functions import Library
from .ir import names
from .ir.graph import BACK_EDGE_OPS, Graph

LOOP_ENTRY_OPS = frozenset({"Enter", "RefEnter"})
LOOP_EXIT_OPS = frozenset({"Exit", "RefExit"})
COND_SWITCH_OPS = frozenset({"Switch", "RefSwitch"})
COND_MERGE_OPS = frozenset({"Merge", "RefMerge"})


@dataclass(frozen=True)
class StepOrder:
    """What ordering the step's state needs: `edges` (variable, read, write) make the write wait
    for the read; `state` names the variables concerned; `notes` the reads left unordered, and
    why."""

    edges: tuple[tuple[str, str, str], ...] = ()
    state: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def plan(graph: Graph, variables, library: Library, step: set[str]) -> StepOrder:
    """The reads of step state that `step` (the nodes a train step runs) leaves unordered
    against a write of the same variable in it, and the edges that order them."""
    writes: dict[str, list[str]] = {}  # variable -> its writers in the step, in graph order
    written_by: dict[str, list[str]] = {}
    order = [n for n in graph.names() if n in step]
    for n in order:
        wrote = gradients.written_variables(graph, n, variables, library)
        if wrote:
            written_by[n] = wrote
            for v in wrote:
                writes.setdefault(v, []).append(n)
    if not writes:
        return StepOrder()
    index = {w: i for i, w in enumerate(written_by)}
    reach = _Reach(graph, order, index)
    v1 = LOOP_ENTRY_OPS | COND_SWITCH_OPS
    context = _v1_context(graph, order) if any(graph.node(n).op in v1 for n in order) else {}
    edges: list[tuple[str, str, str]] = []
    state: list[str] = []
    notes: list[str] = []
    for v in sorted(writes):
        reads = [r for r in gradients.readers(graph, v) if r in step and v not in written_by.get(r, ())]
        ordered_any = False
        for w in writes[v]:
            for r in reads:
                if reach.before(r, w) or reach.after(r, w):
                    continue
                why = _unorderable(context, r, w) or reach.cycle(r, w)
                if why:
                    notes.append(f"the read '{r}' of '{v}' is not ordered before its write '{w}' ({why})")
                    continue
                edges.append((v, r, w))
                reach.add(r, w)
                ordered_any = True
        if ordered_any:
            state.append(v)
    return StepOrder(tuple(edges), tuple(state), tuple(notes))


def apply(rewriter, order: StepOrder) -> None:
    """Add the control edges `order` asks for."""
    by_write: dict[str, list[str]] = {}
    for _, r, w in order.edges:
        by_write.setdefault(w, []).append(r)
    for w, reads in by_write.items():
        rewriter.add_control_inputs(w, reads)


class _Reach:
    """Which writes each node of the step reaches, and is reached by (bit sets over the writes),
    over data and control edges. A v1 loop's back edges count: what its body computes reaches
    its exits, so the passes are repeated until nothing changes (once more per nested loop).
    Nodes that share a control tuple (one object) reach through one stand-in for it, so each
    distinct tuple's edges are walked once (ResNet-50: 83k control inputs, 464 tuples)."""

    def __init__(self, graph: Graph, order: list[str], index: dict[str, int]):
        self.index = index
        inside = set(order)
        back = {n for n in order if graph.node(n).op in BACK_EDGE_OPS}
        preds: dict = {}
        forward: dict = {}  # without back edges: the order of the passes
        loops = False  # a back edge inside the step: the passes repeat until nothing changes
        for n in order:
            data, ctrl = graph.producers(n)
            ps = [p for p in data if p in inside]
            if ctrl:
                key = id(ctrl)
                if key not in preds:
                    preds[key] = forward[key] = [p for p in ctrl if p in inside]
                ps.append(key)
            preds[n] = ps
            forward[n] = ps
            if back and not back.isdisjoint(ps):
                forward[n] = [p for p in ps if p not in back]
                loops = True
        every = list(preds)
        users: dict = {n: [] for n in every}
        for n in every:
            for p in preds[n]:
                users[p].append(n)
        topo = _topological(every, forward, None if loops else users)
        own = {n: 1 << i for n, i in index.items()}
        self.upstream = self._propagate(topo, preds, own, loops)  # writes that reach n
        self.downstream = self._propagate(topo[::-1], users, own, loops)  # writes n reaches
        self.added: dict[str, tuple[list[int], list[int]]] = {}  # see add()
        self.count = 0

    @staticmethod
    def _propagate(order: list, sources: dict[str, list], own: dict[str, int], repeat: bool):
        """Each node's own bit or'ed with its `sources`' bits, over `order` (sources first),
        repeated while `repeat` and something changed. Every node gets an entry."""
        bits = dict.fromkeys(order, 0)
        get = bits.__getitem__
        changed = True
        while changed:
            changed = False
            for n in order:
                b = reduce(or_, map(get, sources[n]), own.get(n, 0))
                if b != bits[n]:
                    bits[n] = b
                    changed = True
            changed = changed and repeat
        return bits

    def before(self, r: str, w: str) -> bool:
        """Whether `r` reaches write `w`."""
        return bool(self.downstream.get(r, 0) >> self.index[w] & 1)

    def after(self, r: str, w: str) -> bool:
        """Whether write `w` reaches `r`."""
        return bool(self.upstream.get(r, 0) >> self.index[w] & 1)

    def add(self, r: str, w: str) -> None:
        """Record the edge r -> w as added (cycle() takes it into account from now on). Per
        write it keeps the writes reaching the reads of its added edges, cumulated in the order
        added, so one walk step costs a test per write with added edges, not one per edge."""
        into = self.added.get(w)
        if into is None:
            into = self.added[w] = ([], [])
        numbers, reached = into
        numbers.append(self.count)
        reached.append((reached[-1] if reached else 0) | self.upstream.get(r, 0))
        self.count += 1

    def cycle(self, r: str, w: str) -> str | None:
        """Why edge r -> w would close a cycle with the edges added so far, or None: whether
        `w` reaches `r` through them. Depth first from `w`; from a write x, the writes whose
        added edges leave a read that x reaches are taken in the order of the first such edge."""
        frontier, seen = [w], {w}
        while frontier:
            x = frontier.pop()
            if self.after(r, x):
                return f"ordering it would close a cycle through '{x}'"
            bit = 1 << self.index[x]
            nxt = []
            for w2, (numbers, reached) in self.added.items():
                if w2 not in seen and reached[-1] & bit:
                    nxt.append((numbers[bisect_left(reached, bit, key=lambda b: b & bit)], w2))
            for _, w2 in sorted(nxt):
                seen.add(w2)
                frontier.append(w2)
        return None


def _topological(order: list, preds: dict, users: dict | None = None) -> list:
    """`order`'s nodes, each after its `preds` (which must be among them); `users`, if given,
    the reverse of `preds`."""
    pending = {n: len(preds[n]) for n in order}
    if users is None:
        users = {n: [] for n in order}
        for n in order:
            for p in preds[n]:
                users[p].append(n)
    ready = [n for n in reversed(order) if not pending[n]]
    out = []
    while ready:
        n = ready.pop()
        out.append(n)
        for u in users[n]:
            pending[u] -= 1
            if not pending[u]:
                ready.append(u)
    return out


def _v1_context(graph: Graph, order: list[str]) -> dict[str, tuple]:
    """For each node of `order` inside v1 control flow, its context: the stack of while loops
    (("loop", Enter)) and cond branches (("cond", Switch, port)) it runs in, innermost last.
    Enter and a read of a Switch output push; Exit pops the innermost loop, Merge the innermost
    branch. Nodes outside control flow are not listed."""
    ctx: dict[str, tuple] = {}
    inside = set(order)
    preds: dict[str, list[str]] = {}
    for n in order:
        data, ctrl = graph.producers(n)
        preds[n] = [p for p in (*data, *ctrl) if p in inside and graph.node(p).op not in BACK_EDGE_OPS]
    for n in _topological(order, preds):
        node = graph.node(n)
        best: tuple = ()
        data = graph.producers(n)[0]
        for i, p in enumerate(data):
            if p not in inside:
                continue
            c = ctx.get(p, ())
            if graph.node(p).op in COND_SWITCH_OPS:
                c = (*c, ("cond", p, names.parse(node.input[i]).index))
            elif graph.node(p).op in LOOP_ENTRY_OPS:
                c = (*c, ("loop", p))
            if len(c) > len(best):
                best = c
        for p in graph.producers(n)[1]:
            c = ctx.get(p, ())
            if p in inside and len(c) > len(best):
                best = c
        if node.op in LOOP_EXIT_OPS:
            loops = [j for j, e in enumerate(best) if e[0] == "loop"]
            best = best[: loops[-1]] if loops else best
        elif node.op in COND_MERGE_OPS and best and best[-1][0] == "cond":
            best = best[:-1]
        if best:
            ctx[n] = best
    return ctx


def _unorderable(context, r: str, w: str) -> str | None:
    """Why a control edge from read `r` to write `w` cannot be added, or None. TensorFlow
    refuses an edge between nodes of different while-loop frames; one from a cond branch the
    write is not in would carry the branch's deadness into the write."""
    rc, wc = context.get(r, ()), context.get(w, ())
    if [e for e in rc if e[0] == "loop"] != [e for e in wc if e[0] == "loop"]:
        return "the read and the write are in different while loops"
    if rc != wc[: len(rc)]:
        return "the read is in a cond branch the write is not in"
    return None


def describe(order: StepOrder) -> str:
    """A line for the summary: the state whose reads were ordered before its writes."""
    if not order.state:
        return ""
    shown = ", ".join(f"'{v}'" for v in order.state[:4])
    more = f" and {len(order.state) - 4} more" if len(order.state) > 4 else ""
    return f"reads of {shown}{more} ordered before the step writes them ({len(order.edges)} edges)"
