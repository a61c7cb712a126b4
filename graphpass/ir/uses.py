"""The use index of a Graph: who reads each node (data, control through shared tuples, colocation)."""

from __future__ import annotations


class Uses:
    """Who reads each node. Data readers with their edge counts; control readers through the
    shared control tuples (linked once per tuple, however many nodes carry it: big graphs repeat
    a few long ones); colocation readers. Readers come in the order they were last linked."""

    def __init__(self):
        self.data: dict[str, dict[str, int]] = {}
        self.sets: dict[str, dict[int, tuple[str, ...]]] = {}  # producer -> tuples holding it, by id
        self.readers: dict[int, dict[str, None]] = {}  # tuple id -> nodes whose control inputs it is
        self.coloc: dict[str, dict[str, int]] = {}
        self.linked: dict[str, int] = {}
        self.clock = 0

    def link(self, name: str, data: tuple[str, ...], ctrl: tuple[str, ...], coloc: tuple[str, ...]) -> None:
        self.clock += 1
        self.linked[name] = self.clock
        for p in data:
            users = self.data.get(p)
            if users is None:
                self.data[p] = {name: 1}
            else:
                users[name] = users.get(name, 0) + 1
        if ctrl:
            key = id(ctrl)
            readers = self.readers.get(key)
            if readers is None:
                self.readers[key] = {name: None}
                for p in ctrl:
                    self.sets.setdefault(p, {})[key] = ctrl
            else:
                readers[name] = None
        for target in coloc:
            users = self.coloc.setdefault(target, {})
            users[name] = users.get(name, 0) + 1

    def unlink(self, name: str, data: tuple[str, ...], ctrl: tuple[str, ...], coloc: tuple[str, ...]) -> None:
        for p in data:
            _dec(self.data, p, name)
        if ctrl:
            key = id(ctrl)
            readers = self.readers.get(key)
            if readers is not None and name in readers:
                del readers[name]
                if not readers:
                    del self.readers[key]
                    for p in ctrl:
                        sets = self.sets.get(p)
                        if sets is not None:
                            sets.pop(key, None)
                            if not sets:
                                del self.sets[p]
        for target in coloc:
            _dec(self.coloc, target, name)

    def users(self, name: str) -> list[str]:
        data = self.data.get(name)
        sets = self.sets.get(name)
        if not sets:
            return list(data) if data else []
        if not data and len(sets) == 1:
            return list(self.readers[next(iter(sets))])
        found = dict.fromkeys(data) if data else {}
        for key in sets:
            found.update(self.readers[key])
        return sorted(found, key=self.linked.__getitem__)


def _dec(index: dict[str, dict[str, int]], key: str, user: str) -> None:
    d = index.get(key)
    if not d or user not in d:
        return
    d[user] -= 1
    if d[user] <= 0:
        del d[user]
        if not d:
            del index[key]
