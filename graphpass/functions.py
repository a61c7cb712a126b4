"""What calls of the graph's library functions (If, While, Case, PartitionedCall, ...) do to their
inputs: which resource inputs the called functions write, and which data inputs flow into those
writes. Read from the FunctionDefs, through nested calls."""

from __future__ import annotations

from collections.abc import Iterable

from . import opdefs

RESOURCE = opdefs.RESOURCE
PASS_THROUGH = ("Identity",)


def called(node, library_names: frozenset[str]) -> list[str]:
    """Names of the library functions `node` calls: its function-valued attrs, or its op itself."""
    out = [node.op] if node.op in library_names else []
    for key in opdefs.function_attrs(node.op):
        if key not in node.attr:
            continue
        value = node.attr[key]
        kind = value.WhichOneof("value")
        if kind == "func":
            out.append(value.func.name)
        elif kind == "list" and value.list.func:
            out.extend(f.name for f in value.list.func)
    return [f for f in out if f in library_names]


def argument_offset(node) -> int:
    """Where the arguments passed on to the called functions start among `node`'s inputs: after
    the predicate of If, the branch index of Case; at 0 for loops and calls."""
    d = opdefs.op_def(node.op, node.name) if opdefs.is_registered(node.op) else None
    if d is None:
        return 0
    pos = 0
    for arg in d.input_arg:
        if arg.name in ("input", "args"):
            return pos
        pos += 1 if not (arg.number_attr or arg.type_list_attr) else len(opdefs.input_arg_positions(node))
    return 0


class Library:
    """The FunctionDefs of one graph, with what each does to its arguments (memoised)."""

    def __init__(self, library):
        self._defs = {f.signature.name: f for f in library.function}
        self.names = frozenset(self._defs)
        self._writes: dict[str, frozenset[int]] = {}
        self._flows: dict[str, dict[int, frozenset[int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._defs)

    def written_inputs(self, node) -> tuple[int, ...]:
        """Input positions of `node` whose resources a function it calls writes."""
        funcs = called(node, self.names)
        if not funcs:
            return ()
        offset = argument_offset(node)
        out: set[int] = set()
        for f in funcs:
            out.update(offset + a for a in self.written_args(f))
        return tuple(sorted(p for p in out if p < len(node.input) and not node.input[p].startswith("^")))

    def flows(self, node) -> dict[int, frozenset[int]]:
        """For each data input position of `node`, the written input positions whose writes it
        reaches inside the called functions."""
        funcs = called(node, self.names)
        offset = argument_offset(node)
        out: dict[int, set[int]] = {}
        for f in funcs:
            for arg, written in self.arg_flows(f).items():
                out.setdefault(offset + arg, set()).update(offset + w for w in written)
        return {k: frozenset(v) for k, v in out.items()}

    def written_args(self, fname: str) -> frozenset[int]:
        if fname not in self._writes:
            self._writes[fname] = frozenset()  # a recursive call writes nothing more
            self._writes[fname] = frozenset(w for _, ws in self._body_writes(fname) for w in ws)
        return self._writes[fname]

    def arg_flows(self, fname: str) -> dict[int, frozenset[int]]:
        """For each argument of `fname`, the written arguments whose writes it reaches."""
        if fname in self._flows:
            return self._flows[fname]
        self._flows[fname] = {}
        f = self._defs[fname]
        args = {a.name: i for i, a in enumerate(f.signature.input_arg)}
        users: dict[str, list[str]] = {}
        for nd in f.node_def:
            for ref in nd.input:
                if not ref.startswith("^"):
                    users.setdefault(_body_node(ref), []).append(nd.name)
        writes = self._body_writes(fname)
        by_node = {n: ws for n, ws in writes}
        out: dict[int, frozenset[int]] = {}
        for arg, i in args.items():
            reached: set[int] = set()
            seen: set[str] = set()
            stack = list(users.get(arg, ()))
            while stack:
                n = stack.pop()
                if n in seen:
                    continue
                seen.add(n)
                reached.update(by_node.get(n, ()))
                stack.extend(users.get(n, ()))
            out[i] = frozenset(reached)
        self._flows[fname] = out
        return out

    def _body_writes(self, fname: str) -> list[tuple[str, frozenset[int]]]:
        """(body node, the arguments it writes) for each writing node of `fname`'s body."""
        f = self._defs[fname]
        args = {a.name: i for i, a in enumerate(f.signature.input_arg)}
        body = {nd.name: nd for nd in f.node_def}
        out = []
        for nd in f.node_def:
            positions: Iterable[int]
            if opdefs.is_registered(nd.op) and not called(nd, self.names):
                positions = opdefs.written_inputs(nd.op)
            else:
                positions = self.written_inputs(nd)
            written = set()
            for p in positions:
                if p < len(nd.input):
                    arg = _to_arg(nd.input[p], body, args)
                    if arg is not None:
                        written.add(arg)
            if written:
                out.append((nd.name, frozenset(written)))
        return out


def _body_node(ref: str) -> str:
    """The body node (or argument) a FunctionDef input names: `n:out:0`, `arg`, `^n`."""
    return ref.lstrip("^").split(":")[0]


def _to_arg(ref: str, body: dict, args: dict[str, int]) -> int | None:
    """The argument a body input comes from, through Identity chains."""
    for _ in range(64):
        name = _body_node(ref)
        if name in args:
            return args[name]
        nd = body.get(name)
        if nd is None or nd.op not in PASS_THROUGH or not nd.input:
            return None
        ref = nd.input[0]
    return None
