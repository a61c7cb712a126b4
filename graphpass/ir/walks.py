"""Whole-graph walks over (data, control) producer maps: cycles and loop back-edges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

BACK_EDGE_OPS = frozenset({"NextIteration", "RefNextIteration"})


def without(producers: tuple[tuple[str, ...], tuple[str, ...]], back: set[str]):
    """(data, control) `producers` without the nodes in `back` (keeping shared tuples shared)."""
    if not back:
        return producers
    data, ctrl = producers
    if not back.isdisjoint(data):
        data = tuple(p for p in data if p not in back)
    if not back.isdisjoint(ctrl):
        ctrl = tuple(p for p in ctrl if p not in back)
    return data, ctrl


def find_cycle(preds: dict[str, tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """The nodes of a cycle (sorted) in the graph whose edges run into each node from its
    (data, control) producers `preds[node]`, or [] if there is none. Iterative depth-first
    search, linear in the edges; names missing from `preds` have no inputs. A control tuple that
    nodes share (one object) is walked once: when the first of them is done, so are its members."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    walked: set[int] = set()
    none = ((), ())

    def inputs(n: str):
        data, ctrl = preds.get(n, none)
        return chain(data, ctrl) if ctrl and id(ctrl) not in walked else iter(data)

    for root in preds:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [inputs(root)]
        while stack:
            for p in stack[-1]:
                seen = state.get(p)
                if seen is None:
                    state[p] = 1
                    path.append(p)
                    stack.append(inputs(p))
                    break
                if seen == 1:
                    return sorted(path[path.index(p) :])
            else:
                done = path.pop()
                state[done] = 2
                ctrl = preds.get(done, none)[1]
                if ctrl:
                    walked.add(id(ctrl))
                stack.pop()
    return []


def ancestors(producers, roots: Iterable[str], stop=None, parsed: dict | None = None) -> set[str]:
    """Nodes reachable backwards from `roots` (included) through `producers(name)` -> (data,
    control), read from `parsed` (a cache of its answers) where that has them; `stop(name)` true
    means: include the node but do not walk past it. A control tuple that nodes share (one
    object) is pushed once."""
    seen: set[str] = set()
    expanded: set[int] = set()
    cached = (parsed or {}).get
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if stop is not None and stop(n):
            continue
        data, ctrl = cached(n) or producers(n)
        stack.extend(data)
        if ctrl and id(ctrl) not in expanded:
            expanded.add(id(ctrl))
            stack.extend(ctrl)
    return seen


def descendants(uses, producers, copy_readers, roots: Iterable[str], through_control: bool) -> set[str]:
    """Nodes reachable forwards from `roots` (included) over the use index `uses`, and through
    `copy_readers(name, colocated=False)` (tower copies' readers) when given; over data edges
    only if not `through_control`."""
    data_users, control_sets, readers = uses.data, uses.sets, uses.readers
    seen: set[str] = set()
    expanded: set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        found = data_users.get(n)
        if found:
            stack.extend(found)
        if through_control:
            sets = control_sets.get(n)
            if sets:
                for key in sets:
                    if key not in expanded:
                        expanded.add(key)
                        stack.extend(readers[key])
        if copy_readers is not None:
            stack.extend(
                u for u in copy_readers(n, colocated=False) if through_control or n in producers(u)[0]
            )
    return seen
