"""The single-tower originals: which ones the outside still reads, and dropping the rest."""

from __future__ import annotations

from ...context import RewriteContext
from ...errors import InvalidGraphError
from ...ir.graph import Graph
from ...naming import tower_name
from .regions import Regions


def read_from_outside(g: Graph, region: frozenset[str], original: frozenset[str] | None) -> set[str]:
    """Region nodes that a node outside the region reads or is colocated with (if `original`
    is given, a node of the input graph): one pass over the outside nodes' inputs."""
    found: set[str] = set()
    walked: set[int] = set()
    for u in g:
        if u in region or (original is not None and u not in original):
            continue
        data, ctrl = g.producers(u)
        found.update(region.intersection(data))
        if ctrl and id(ctrl) not in walked:
            walked.add(id(ctrl))
            found.update(region.intersection(ctrl))
        found.update(region.intersection(g.colocation(u)))
    return found


def drop_originals(ctx: RewriteContext, regions: Regions, merges) -> None:
    """Erase the single-tower originals that nothing outside the towers still needs (loops
    make region nodes read each other, so this is a reachability question, not a count)."""
    g, rw, region, order = ctx.graph, ctx.rewriter, regions.region, regions.order
    keep: set[str] = set()
    outside = read_from_outside(g, region, None)
    stack = [n for n in order if n in g and (n in merges or n in outside)]
    while stack:
        n = stack.pop()
        if n in keep:
            continue
        keep.add(n)
        stack.extend(p for p in g.input_nodes(n) if p in region and p in g)
    rw.drop([n for n in order if n not in keep and n in g])
    for n in keep:  # a kept node colocated with a dropped one goes with tower 0's copy of it
        if g.get(n) is not None and g.colocation(n):
            targets = list(g.colocation(n))
            moved = [tower_name(0, t) if t in region and t not in keep else t for t in targets]
            if moved != targets:
                rw.set_colocation(n, moved)
    for n in order:
        if n in keep and n not in merges and (n in regions.dep or n in regions.update):
            raise InvalidGraphError(f"node '{n}' is still read outside the towers after replication")
