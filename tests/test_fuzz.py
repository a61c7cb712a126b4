"""Property/fuzz tests: mutated GraphDefs, rules YAML, device specs and paths never crash graphpass.

Every case must end one of two ways:
- success: `graphpass.rewrite` returns a GraphDef that `verify.check` accepts, that TensorFlow's
  importer accepts whenever it accepts the input, and the input GraphDef is left unmodified (or
  `load_graph` / `Pipeline.from_yaml` / `Pipeline.load` / `parse_devices` return);
- a `GraphpassError` (any subclass) whose message is one non-empty line.
Anything else (KeyError, TypeError, protobuf or TensorFlow errors, RecursionError, a segfault or a
hang) is a failure. InternalError is allowed but counted, since it means "a bug in graphpass".

Cases are derandomized (the same cases on every run) and bounded so that the file runs in well
under a minute; each fuzz test prints how many cases it tried and how they ended. To explore, set
GRAPHPASS_FUZZ_EXAMPLES=N (N cases per test, new ones each run unless GRAPHPASS_FUZZ_SEED is set;
InternalError sources are listed too) and optionally GRAPHPASS_FUZZ_MUTATIONS=kind,kind (only those
graph mutations, to look past a frequent bug).

Cases that hand mutated graphs to TensorFlow run in a worker process (see Worker) so that a segfault
in TensorFlow's C++ code is reported as a failure instead of killing pytest.

Failures are collected, deduplicated by (kind, exception type, innermost graphpass frames) and
reported together, each with a reproducer; `replay(...)` re-runs a graph case and lets the raw
exception propagate, e.g.
    python -c "from tests.test_fuzz import replay; replay('mlp_sgd', [('delete_node', 3, 0, 0)])"
Bugs already reported are listed in KNOWN_BUGS (a matching case counts as 'known bug', not as a
failure) and pinned by the strict-xfail regression tests at the end of the file: once a bug is
fixed its regression test XPASSes, which fails the suite until the xfail mark and the KNOWN_BUGS
entry are removed.
"""

from __future__ import annotations

import collections
import faulthandler
import functools
import math
import os
import re
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import yaml  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from graphpass.pipeline import preset_names  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Every fixture graph (small ones: each case rewrites one), the inference-only one included.
ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.pb") if p.stat().st_size < 200_000)
TRAINING = [f for f in ALL_FIXTURES if not f.startswith("inference")]
PRESETS = preset_names()
MAX_TOWERS = 16  # rewrites never get more towers (memory and time); huge counts only go to parse_devices

_ENV_EXAMPLES = int(os.environ.get("GRAPHPASS_FUZZ_EXAMPLES", "0") or 0)
_ENV_SEED = os.environ.get("GRAPHPASS_FUZZ_SEED")
_LOG = os.environ.get("GRAPHPASS_FUZZ_LOG")  # exploration: append each case's reproducer here first
ISOLATE = os.environ.get("GRAPHPASS_FUZZ_ISOLATE", "1") != "0"  # see Worker


def _settings(default_examples: int):
    """Bounded and derandomized in CI; GRAPHPASS_FUZZ_EXAMPLES=N explores (random unless a seed is set)."""
    explore = _ENV_EXAMPLES > 0
    return settings(
        max_examples=_ENV_EXAMPLES if explore else default_examples,
        deadline=None,
        derandomize=not explore or _ENV_SEED is not None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


# ---------------------------------------------------------------------------------------------
# Outcomes: classify every case, deduplicate failures, know the bugs already reported.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownBug:
    """A reported bug: a failure matches if its kind and exception type are equal and `where`
    (a substring of the last graphpass frame, "file.py:function") and `message` (a regex) match."""

    id: str
    kind: str
    exc_type: str = ""
    where: str = ""
    message: str = ""

    def matches(self, f: Failure) -> bool:
        return (
            f.kind == self.kind
            and self.exc_type in ("", f.exc_type)
            and self.where in f.where_key
            and re.search(self.message, f.message) is not None
        )


# Bugs found by this file and reported to be fixed; each has a strict-xfail regression test at the
# end of the file (test_regression_<id with _>). Remove an entry together with its xfail mark.
# (Bugs that end in an InternalError need no entry, since the fuzz tests allow InternalError, but
# have regression tests too: colocation-missing-target, nccl-shared-name, empty-pipeline.)
KNOWN_BUGS: list[KnownBug] = []  # all bugs found so far are fixed; their regression tests stay


@dataclass
class Failure:
    kind: str  # crash | message | bad-output | mutated-input | wrong-result
    exc_type: str
    message: str
    where: str  # file:line in function
    where_key: str  # file:function (stable across edits)
    reproducer: str
    count: int = 1

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.exc_type, self.where_key)


def _graphpass_frame(exc: BaseException) -> tuple[str, str]:
    """Where in graphpass `exc` was raised: ("ir/graph.py:203 in f", "ir/graph.py:f<-api.py:g"), the
    innermost graphpass frame and, in the key, its caller too (one frame is often a shared helper)."""
    frames = traceback.extract_tb(exc.__traceback__)
    sep = os.sep
    ours = [
        f for f in frames if f"{sep}graphpass{sep}" in f.filename and f"{sep}tests{sep}" not in f.filename
    ]
    if not ours:
        ours = frames[-1:]
    if not ours:
        return "?", "?"

    def rel(frame) -> str:
        path = frame.filename.replace(sep, "/")
        return path.split("/graphpass/", 1)[1] if "/graphpass/" in path else Path(path).name

    last = ours[-1]
    key = "<-".join(f"{rel(f)}:{f.name}" for f in reversed(ours[-2:]))
    return f"{rel(last)}:{last.lineno} in {last.name}", key


def _one_line(text: str, limit: int = 300) -> str:
    text = " | ".join(text.splitlines()) if text else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Outcomes:
    """Tally of one strategy's cases: how each ended, plus distinct failures with reproducers."""

    def __init__(self, name: str, known_bugs: bool = True):
        self.name = name
        self.known_bugs = known_bugs  # False: a known bug is a failure too (regression tests)
        self.cases = 0
        self.endings: collections.Counter[str] = collections.Counter()
        self.failures: dict[tuple[str, str, str], Failure] = {}
        self.known: collections.Counter[str] = collections.Counter()
        self.internal: dict[tuple[str, str, str], Failure] = {}
        self.start = time.perf_counter()

    def ok(self, what: str = "ok") -> None:
        self.endings[what] += 1

    def error(self, e: BaseException, reproducer: str) -> None:
        """A GraphpassError: fine if its message is one non-empty line."""
        self.endings[type(e).__name__] += 1
        if type(e).__name__ == "InternalError":  # allowed, but a bug by its own definition: listed
            where, where_key = _graphpass_frame(e)
            f = Failure("internal", "InternalError", _one_line(str(e)), where, where_key, reproducer)
            if f.key in self.internal:
                self.internal[f.key].count += 1
            else:
                self.internal[f.key] = f
        message = str(e)
        if not message.strip() or "\n" in message or "\r" in message:
            self.fail(
                "message", e, reproducer, f"GraphpassError message is not one non-empty line: {message!r}"
            )

    def fail(self, kind: str, e: BaseException | None, reproducer: str, message: str | None = None) -> None:
        if e is not None:
            where, where_key = _graphpass_frame(e)
            exc_type = type(e).__name__
            text = message if message is not None else str(e)
        else:  # no exception: failures of one kind differ by their message (names masked)
            text = message or ""
            where, exc_type = "-", "-"
            where_key = re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", text))[:100]
        self.record(Failure(kind, exc_type, _one_line(text), where, where_key, reproducer))

    def record(self, f: Failure) -> None:
        kind = f.kind
        for bug in KNOWN_BUGS if self.known_bugs else ():
            if bug.matches(f):
                self.known[bug.id] += 1
                self.endings[f"known bug {bug.id}"] += 1
                return
        self.endings[f"FAILURE {kind}"] += 1
        if f.key in self.failures:
            self.failures[f.key].count += 1
        else:
            self.failures[f.key] = f

    def summary(self) -> str:
        seconds = time.perf_counter() - self.start
        endings = ", ".join(f"{k} {v}" for k, v in sorted(self.endings.items()))
        return f"fuzz[{self.name}]: {self.cases} cases in {seconds:.1f} s ({endings})"

    def report(self, failures=None, what: str = "failure(s)") -> str:
        failures = list(self.failures.values() if failures is None else failures)
        lines = [f"{len(failures)} distinct {what} in fuzz[{self.name}]:"]
        for f in failures:
            lines.append(
                f"- [{f.kind}] {f.exc_type}: {f.message}\n    at {f.where} ({f.count} case(s))\n"
                f"    reproducer: {_one_line(f.reproducer, 1500)}"
            )
        return "\n".join(lines)

    def finish(self, capsys) -> None:
        with capsys.disabled():
            print("\n" + self.summary())
            if _ENV_EXAMPLES and self.internal:  # exploring: list where InternalErrors came from
                print(self.report(self.internal.values(), "InternalError source(s)"))
        assert self.cases > 0
        if self.failures:
            pytest.fail(self.report(), pytrace=False)


class Worker:
    """A child process (spawned, TensorFlow imported once) that runs cases one at a time.

    Malformed graphs can crash TensorFlow's C++ code, and a segfault cannot be caught in the test
    process, so cases that hand graphs to TensorFlow run here. A worker that dies is replaced; the
    case that killed it is re-run alone in a fresh worker to tell a crash of that case from one
    that depends on earlier cases. A case running over CASE_TIMEOUT seconds is a hang.
    GRAPHPASS_FUZZ_ISOLATE=0 runs cases in the test process instead (for a debugger).
    """

    CASE_TIMEOUT = 60.0

    def __init__(self):
        self.proc = None
        self.conn = None
        self.log = None

    def _start(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.log = tempfile.NamedTemporaryFile(prefix="graphpass-fuzz-", suffix=".log", delete=False)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.log.name), daemon=True)
        self.proc.start()
        child.close()

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.conn.close()
        if self.log is not None:
            self.log.close()
            os.unlink(self.log.name)
        self.proc = self.conn = self.log = None

    def _run_once(self, task) -> tuple[str, object]:
        """("done", (endings, failures, known)), or ("fatal"/"hang", description) and no worker."""
        if self.proc is None or not self.proc.is_alive():
            self.close()
            self._start()
        try:
            self.conn.send(task)
            if not self.conn.poll(self.CASE_TIMEOUT):
                self.proc.kill()
                self.proc.join()
                self.close()
                return "hang", f"no result after {self.CASE_TIMEOUT:.0f} s"
            return "done", self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(10)
            code = self.proc.exitcode
            with open(self.log.name, errors="replace") as f:
                dump = f.read()
            self.close()
            if code is not None and code < 0:
                what = f"the process was killed by {signal.Signals(-code).name}"
            else:
                what = f"the process exited with status {code}"
            return "fatal", (what, dump)

    def run(self, outcomes: Outcomes, reproducer: str, task) -> None:
        if _LOG:
            with open(_LOG, "a") as log:
                log.write(reproducer + "\n")
        if not ISOLATE:
            TASKS[task[0]](outcomes, reproducer, *task[1:])
            return
        status, result = self._run_once((outcomes.name, outcomes.known_bugs, reproducer) + tuple(task))
        if status == "done" and result[0] == "harness-error":
            raise RuntimeError(f"the fuzz harness itself failed on {reproducer}:\n{result[1]}")
        if status == "done":
            endings, failures, known, internal = result
            outcomes.endings.update(endings)
            outcomes.known.update(known)
            for fields, into in [(x, outcomes.failures) for x in failures] + [
                (x, outcomes.internal) for x in internal
            ]:
                f = Failure(*fields)
                if f.key in into:
                    into[f.key].count += f.count
                else:
                    into[f.key] = f
            return
        if status == "hang":
            outcomes.record(Failure("hang", "Timeout", result, "?", "?", reproducer))
            return
        what, dump = result
        again, _ = self._run_once((outcomes.name, outcomes.known_bugs, reproducer) + tuple(task))
        if again == "done":
            what += " (but not when the case ran alone: it depends on the cases before it)"
        where, where_key = _faulthandler_frame(dump)
        outcomes.record(Failure("fatal", "Signal", what, where, where_key, reproducer))


def _faulthandler_frame(dump: str) -> tuple[str, str]:
    """The innermost graphpass frame of a faulthandler dump (innermost frames come first)."""
    frames = re.findall(r'File "([^"]*)", line (\d+) in (\S+)', dump.split("Fatal Python error")[-1])
    ours = [f for f in frames if "/graphpass/" in f[0] and "/tests/" not in f[0]]
    if not ours:
        return "?", "?"
    path, line, func = ours[0]
    rel = path.split("/graphpass/", 1)[1]
    return f"{rel}:{line} in {func}", f"{rel}:{func}"


def _worker_main(conn, log_path: str) -> None:
    """The worker's loop: (strategy, reproducer, task name, *args) in, how the case ended out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = open(log_path, "a")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 2)  # TensorFlow's C++ warnings and the crash dump go to the log
    faulthandler.enable(file=log, all_threads=False)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        os.ftruncate(log.fileno(), 0)  # the log only ever holds the current case's output
        name, known_bugs, reproducer, kind, *args = message
        o = Outcomes(name, known_bugs)
        try:
            TASKS[kind](o, reproducer, *args)
        except BaseException:  # noqa: BLE001 - a bug of this file (cases catch graphpass's errors)
            conn.send(("harness-error", traceback.format_exc()))
            continue
        failures, internal = (
            [
                (f.kind, f.exc_type, f.message, f.where, f.where_key, f.reproducer, f.count)
                for f in fs.values()
            ]
            for fs in (o.failures, o.internal)
        )
        conn.send((dict(o.endings), failures, dict(o.known), internal))


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def _expect(outcomes: Outcomes, reproducer: str, fn, *args, **kwargs):
    """Run fn; count the ending. Returns (True, result) on success, (False, None) otherwise."""
    from graphpass.errors import GraphpassError

    try:
        result = fn(*args, **kwargs)
    except GraphpassError as e:
        outcomes.error(e, reproducer)
        return False, None
    except Exception as e:  # noqa: BLE001 - every other exception is what this file hunts
        outcomes.fail("crash", e, reproducer)
        return False, None
    return True, result


def check_rewrite(
    outcomes: Outcomes, reproducer: str, graph, devices, rules, device_type, verify_each=False, **extra
):
    """rewrite() returns a verifiable GraphDef and leaves its input alone, or raises GraphpassError."""
    from tensorflow.core.framework import graph_pb2

    from graphpass import api
    from graphpass.ir import verify
    from graphpass.ir.graph import Graph

    before = graph.SerializeToString(deterministic=True) if isinstance(graph, graph_pb2.GraphDef) else None
    done, out = _expect(
        outcomes,
        reproducer,
        api.rewrite,
        graph,
        devices=devices,
        rules=rules,
        device_type=device_type,
        verify_each=verify_each,
        **extra,
    )
    if before is not None and graph.SerializeToString(deterministic=True) != before:
        outcomes.fail("mutated-input", None, reproducer, "rewrite() modified the GraphDef it was given")
    if not done:
        return
    try:
        verify.check(Graph(out, copy=False))
    except Exception as e:  # noqa: BLE001
        outcomes.fail("bad-output", e, reproducer, f"rewrite succeeded but its output fails verify: {e}")
        return
    # Beyond verify: TensorFlow itself must accept the output wherever it accepted the input.
    problem = tf_import_error(out)
    if problem is None:
        outcomes.ok("rewritten")
    elif isinstance(graph, graph_pb2.GraphDef) and tf_import_error(graph) is not None:
        outcomes.ok("rewritten (input and output both rejected by TensorFlow)")
    else:
        outcomes.fail(
            "bad-output",
            None,
            reproducer,
            f"TensorFlow accepts the input but not the rewritten graph: {problem}",
        )


def tf_import_error(graph_def) -> str | None:
    """Why TensorFlow's C++ importer (as graphpass.shapes uses it) rejects `graph_def`, or None."""
    import tensorflow as tf
    from tensorflow.python.client import pywrap_tf_session as c_api
    from tensorflow.python.framework import c_api_util

    graph = tf.Graph()
    opts = c_api_util.ScopedTFImportGraphDefOptions()
    c_api.TF_ImportGraphDefOptionsSetValidateColocationConstraints(opts.options, False)
    try:
        with c_api_util.tf_buffer(graph_def.SerializeToString()) as buf:
            c_api.TF_GraphImportGraphDefWithResults(graph._c_graph, buf, opts.options)
    except Exception as e:  # noqa: BLE001 - TensorFlow's status errors
        return _one_line(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 200)
    return None


# ---------------------------------------------------------------------------------------------
# GraphDef mutations. Each takes (graph_def, a, b, c) with small non-negative ints that pick
# nodes, inputs and variants (modulo what exists), edits the GraphDef in place and returns a
# description with concrete node names (or None where it does not apply).
# ---------------------------------------------------------------------------------------------


@functools.cache
def fixture_bytes(name: str) -> bytes:
    from graphpass import io

    return io.serialize(io.load_graph(FIXTURES / f"{name}.pb"))


def fixture_graph(name: str):
    from tensorflow.core.framework import graph_pb2

    gd = graph_pb2.GraphDef()
    gd.ParseFromString(fixture_bytes(name))
    return gd


@functools.cache
def op_pool() -> tuple[str, ...]:
    """Registered op types: every op the fixtures use, plus ops graphpass treats specially."""
    ops = {n.op for name in ALL_FIXTURES for n in fixture_graph(name).node}
    ops |= {
        "NoOp", "Identity", "IdentityN", "Const", "Placeholder", "PlaceholderWithDefault", "VariableV2",
        "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "Assign", "AssignAdd", "ApplyGradientDescent",
        "ResourceApplyGradientDescent", "ApplyAdam", "ResourceApplyAdam", "ApplyMomentum",
        "SparseApplyMomentum", "ResourceSparseApplyAdagrad", "AddN", "Split", "ConcatV2", "Switch",
        "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "NcclAllReduce", "CollectiveReduceV2",
        "StatefulPartitionedCall", "RefIdentity", "TemporaryVariable", "Assert", "ScatterAdd",
        "ResourceAccumulatorApplyGradient", "ConditionalAccumulator", "Mean", "Shape", "Reshape",
    }  # fmt: skip
    return tuple(sorted(ops))


UNKNOWN_OPS = ("NoSuchOp", "", "MyCustomOp>", "Apply", "ApplyGradientDescentV9")

WEIRD_NAMES = (
    "",
    "x:1",
    "x:-1",
    "^x",
    "tower1/{name}",
    "tower0/{name}",
    "{name}/split",
    "reduced_grads/{name}",
    "allreduce/{name}/sum",
    "tower1/reduced_grads/{name}",
    "gradients/{name}_grad/x",
    "gradient_tape/{name}",
    "{name} with space",
    "名前/{name}",
    "line\nbreak",
    "loc:@{name}",
    "/",
    "a//b",
    "_grad/",
    "init",
    "{name}_1",
    "x" * 300,
    "{other}",
)

BAD_REFS = (
    "no_such_node",
    "{name}:7",
    "{name}:-1",
    "{name}:x",
    "{name}:",
    "{name}:99999999999999999999",
    "{name}:00",
    "^no_such_node",
    "^",
    "",
    ":",
    "^{name}:1",
    "{name}",
    "^{name}",
)

DEVICE_STRINGS = (
    "",
    "/device:GPU:0",
    "/device:CPU:0",
    "/cpu:0",
    "/device:TPU:0",
    "garbage",
    "/job:ps/task:0",
    "/job:ps/task:0/device:CPU:0",
    "/device:GPU:*",
    "/gpu:99",
    "/device:GPU:-1",
    "/job:a:b",
)


def _name_template(t: str, gd, i: int) -> str:
    node = gd.node[i % len(gd.node)]
    other = gd.node[(i * 7 + 3) % len(gd.node)]
    return t.replace("{name}", node.name).replace("{other}", other.name)


def _pick(gd, i: int):
    return gd.node[i % len(gd.node)] if len(gd.node) else None


def _rename_everywhere(gd, mapping: dict[str, str]) -> None:
    """Rename nodes and every reference to them (inputs and colocation)."""
    from graphpass.ir import names

    for node in gd.node:
        if node.name in mapping:
            node.name = mapping[node.name]
        new = []
        for ref in node.input:
            r = names.parse(ref)
            if r.node in mapping:
                ref = str(names.Ref(mapping[r.node], r.index, r.control))
            new.append(ref)
        del node.input[:]
        node.input.extend(new)
        if "_class" in node.attr:
            vals = list(node.attr["_class"].list.s)
            out = []
            for s in vals:
                if s.startswith(b"loc:@") and s[5:].decode(errors="replace") in mapping:
                    s = b"loc:@" + mapping[s[5:].decode()].encode()
                out.append(s)
            del node.attr["_class"].list.s[:]
            node.attr["_class"].list.s.extend(out)


def m_delete_node(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    name = n.name
    gd.node.remove(n)
    return f"delete node '{name}'"


def m_rename_node(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    old, new = n.name, _name_template(WEIRD_NAMES[b % len(WEIRD_NAMES)], gd, a)
    n.name = new
    return f"rename node '{old}' to {new!r} (references left pointing at the old name)"


def m_rename_consistently(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    old, new = n.name, _name_template(WEIRD_NAMES[b % len(WEIRD_NAMES)], gd, a)
    _rename_everywhere(gd, {old: new})
    return f"rename node '{old}' to {new!r} with its references"


def m_rename_scope(gd, a, b, c):
    """Rename a whole top-level scope (e.g. 'gradients' -> 'g'), references included."""
    scopes = sorted({n.name.split("/")[0] for n in gd.node if "/" in n.name})
    if not scopes:
        return None
    scope = scopes[a % len(scopes)]
    new_scope = ("g", "tower1", "gradient_tape", "x_grad", "")[b % 5]
    mapping = {n.name: new_scope + n.name[len(scope) :] for n in gd.node if n.name.startswith(scope + "/")}
    _rename_everywhere(gd, mapping)
    return f"rename scope '{scope}/' to '{new_scope}/' with references"


def m_bad_input(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    ref = _name_template(BAD_REFS[c % len(BAD_REFS)], gd, a * 31 + b)
    if n.input:
        pos = b % len(n.input)
        old = n.input[pos]
        n.input[pos] = ref
        return f"node '{n.name}': input {pos} {old!r} -> {ref!r}"
    n.input.append(ref)
    return f"node '{n.name}': add input {ref!r}"


def m_wrong_output_index(gd, a, b, c):
    candidates = [n for n in gd.node if any(not r.startswith("^") for r in n.input)]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    data = [k for k, r in enumerate(n.input) if not r.startswith("^")]
    pos = data[b % len(data)]
    old = n.input[pos]
    base = old.rsplit(":", 1)[0] if ":" in old else old
    idx = (1, 2, 7, 100, 2**31)[c % 5]
    n.input[pos] = f"{base}:{idx}"
    return f"node '{n.name}': input {pos} {old!r} -> '{base}:{idx}'"


def m_add_control_input(gd, a, b, c):
    n, t = _pick(gd, a), _pick(gd, b)
    if n is None:
        return None
    where = c % 2
    if where == 0:
        n.input.append("^" + t.name)
        return f"node '{n.name}': add control input '^{t.name}'"
    n.input.insert(0, "^" + t.name)  # a control input before data inputs
    return f"node '{n.name}': insert control input '^{t.name}' before its data inputs"


def m_remove_input(gd, a, b, c):
    candidates = [n for n in gd.node if n.input]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    if c % 3 == 0:
        del n.input[:]
        return f"node '{n.name}': remove all inputs"
    pos = b % len(n.input)
    old = n.input[pos]
    del n.input[pos]
    return f"node '{n.name}': remove input {pos} ({old!r})"


def m_add_data_input(gd, a, b, c):
    n, t = _pick(gd, a), _pick(gd, b)
    if n is None:
        return None
    data = [r for r in n.input if not r.startswith("^")]
    ctrl = [r for r in n.input if r.startswith("^")]
    del n.input[:]
    n.input.extend(data + [t.name] + ctrl)
    return f"node '{n.name}': add data input '{t.name}'"


def m_swap_inputs(gd, a, b, c):
    candidates = [n for n in gd.node if sum(not r.startswith("^") for r in n.input) >= 2]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    data = [k for k, r in enumerate(n.input) if not r.startswith("^")]
    i, j = data[b % len(data)], data[(b + 1 + c) % len(data)]
    n.input[i], n.input[j] = n.input[j], n.input[i]
    return f"node '{n.name}': swap inputs {i} and {j}"


def m_change_op(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    old = n.op
    if c % 4 == 0:
        n.op = UNKNOWN_OPS[b % len(UNKNOWN_OPS)]
    else:
        pool = op_pool()
        n.op = pool[b % len(pool)]
    return f"node '{n.name}': op {old} -> {n.op!r}"


def _bad_attr_values():
    from tensorflow.core.framework import attr_value_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    A = attr_value_pb2.AttrValue
    TSP = tensor_shape_pb2.TensorShapeProto

    def shape(dims):
        return A(shape=TSP(dim=[TSP.Dim(size=d) for d in dims]))

    float3 = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=TSP(dim=[TSP.Dim(size=3)]), tensor_content=b"\x00"
    )
    int_vals = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=TSP(), int_val=[1, 2])
    strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=TSP(), string_val=[b"\xff"])
    huge = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=TSP(dim=[TSP.Dim(size=2**40)]), float_val=[1.0]
    )
    return [
        ("empty AttrValue", A()),
        ("type DT_INVALID", A(type=types_pb2.DT_INVALID)),
        ("type DT_RESOURCE", A(type=types_pb2.DT_RESOURCE)),
        ("type DT_STRING", A(type=types_pb2.DT_STRING)),
        ("type DT_INT64", A(type=types_pb2.DT_INT64)),
        ("type DT_FLOAT_REF", A(type=types_pb2.DT_FLOAT_REF)),
        ("type 9999 (no such DataType)", A(type=9999)),
        ("s 'garbage'", A(s=b"garbage")),
        ("s non-UTF-8", A(s=b"\xff\xfe")),
        ("i -1", A(i=-1)),
        ("i 2**40", A(i=2**40)),
        ("f nan", A(f=math.nan)),
        ("b true", A(b=True)),
        ("shape unknown rank", A(shape=TSP(unknown_rank=True))),
        ("shape scalar", shape([])),
        ("shape [-5, 3]", shape([-5, 3])),
        ("shape [2**40, 2**40]", shape([2**40, 2**40])),
        ("shape [0]", shape([0])),
        ("empty list", A(list=A.ListValue())),
        ("list of types", A(list=A.ListValue(type=[types_pb2.DT_FLOAT, types_pb2.DT_INT32]))),
        ("list ['loc:@no_such_node']", A(list=A.ListValue(s=[b"loc:@no_such_node"]))),
        ("list ['loc:@']", A(list=A.ListValue(s=[b"loc:@"]))),
        ("list ['loc:@\\xff'] (not UTF-8)", A(list=A.ListValue(s=[b"loc:@\xff"]))),
        ("list ['not-a-loc']", A(list=A.ListValue(s=[b"not-a-loc"]))),
        ("empty tensor", A(tensor=tensor_pb2.TensorProto())),
        ("float[3] tensor with 1 content byte", A(tensor=float3)),
        ("int32 scalar tensor with 2 values", A(tensor=int_vals)),
        ("string tensor", A(tensor=strings)),
        ("float[2**40] tensor", A(tensor=huge)),
        ("func 'nope'", A(func=attr_value_pb2.NameAttrList(name="nope"))),
        ("placeholder 'T'", A(placeholder="T")),
    ]


ATTR_KEYS = (
    "dtype", "shape", "T", "value", "_class", "N", "num_split", "Tidx", "out_type", "use_locking",
    "container", "shared_name", "_output_shapes", "validate_shape", "Tshape", "axis", "keep_dims",
)  # fmt: skip


def _attr_key(n, b: int) -> str:
    keys = sorted(n.attr) + [k for k in ATTR_KEYS if k not in n.attr]
    own = sorted(n.attr)
    # prefer attributes the node has (two times in three)
    if own and b % 3:
        return own[b % len(own)]
    return keys[b % len(keys)]


def m_delete_attr(gd, a, b, c):
    candidates = [n for n in gd.node if n.attr]
    if not candidates:
        return None
    n = candidates[a % len(candidates)]
    keys = sorted(n.attr)
    key = keys[b % len(keys)]
    del n.attr[key]
    return f"node '{n.name}' ({n.op}): delete attr '{key}'"


def m_corrupt_attr(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    key = _attr_key(n, b)
    label, value = _bad_attr_values()[c % len(_bad_attr_values())]
    n.attr[key].CopyFrom(value)
    return f"node '{n.name}' ({n.op}): attr '{key}' = {label}"


def m_bogus_colocation(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    other = _pick(gd, b).name
    variants = [
        [b"loc:@no_such_node"],
        [b"loc:@" + n.name.encode()],
        [b"loc:@" + other.encode()],
        [b"loc:@"],
        [b"loc:@\xff\xfe"],
        [b"loc:@" + other.encode(), b"loc:@no_such_node"],
        [b"garbage"],
        [],
    ]
    vals = variants[c % len(variants)]
    n.attr["_class"].list.s[:] = vals
    return f"node '{n.name}': _class = {vals!r}"


def m_duplicate_node(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    copy = gd.node.add()
    copy.CopyFrom(n)
    if c % 2:
        copy.name = n.name + "_dup"
        return f"copy node '{n.name}' as '{copy.name}' (same inputs)"
    return f"duplicate node '{n.name}' (same name twice)"


def m_make_cycle(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    from graphpass.ir import names

    by_name = {x.name: x for x in gd.node}
    target = n
    for _ in range(1 + b % 6):  # walk back to an ancestor
        ins = [names.node_of(r) for r in target.input if names.node_of(r) in by_name]
        if not ins:
            break
        target = by_name[ins[c % len(ins)]]
    if c % 2:
        target.input.append("^" + n.name)
        return f"cycle: node '{target.name}' gets control input '^{n.name}'"
    data = [r for r in target.input if not r.startswith("^")]
    ctrl = [r for r in target.input if r.startswith("^")]
    del target.input[:]
    target.input.extend(data + [n.name] + ctrl)
    return f"cycle: node '{target.name}' gets data input '{n.name}'"


def m_placeholder_shape(gd, a, b, c):
    from tensorflow.core.framework import tensor_shape_pb2

    phs = [n for n in gd.node if n.op in ("Placeholder", "PlaceholderWithDefault")]
    if not phs:
        return None
    n = phs[a % len(phs)]
    TSP = tensor_shape_pb2.TensorShapeProto
    old = [d.size for d in n.attr["shape"].shape.dim] if "shape" in n.attr else None
    rest = (old or [-1, 4])[1:]
    variants = [
        ("fixed batch 3", [3] + rest),
        ("fixed batch 5", [5] + rest),
        ("fixed batch 6", [6] + rest),
        ("fixed batch 1", [1] + rest),
        ("fixed batch 0", [0] + rest),
        ("batch -7", [-7] + rest),
        ("batch 2**40", [2**40] + rest),
        ("rank 0", []),
        ("unknown rank", None),
        ("rank 1 [-1]", [-1]),
        ("extra dims", [-1] + rest + [2, 2]),
        ("no shape attr", "delete"),
    ]
    label, dims = variants[c % len(variants)]
    if dims == "delete":
        if "shape" in n.attr:
            del n.attr["shape"]
    elif dims is None:
        n.attr["shape"].shape.CopyFrom(TSP(unknown_rank=True))
    else:
        n.attr["shape"].shape.CopyFrom(TSP(dim=[TSP.Dim(size=d) for d in dims]))
    return f"placeholder '{n.name}' (shape {old}): {label}"


def m_set_device(gd, a, b, c):
    n = _pick(gd, a)
    if n is None:
        return None
    dev = DEVICE_STRINGS[c % len(DEVICE_STRINGS)]
    if b % 4 == 0:
        for x in gd.node:
            x.device = dev
        return f"every node: device = {dev!r}"
    n.device = dev
    return f"node '{n.name}': device = {dev!r}"


def m_reorder(gd, a, b, c):
    if len(gd.node) < 2:
        return None
    nodes = list(gd.node)
    if c % 2:
        nodes.reverse()
        label = "reverse the node order"
    else:
        k = a % len(nodes)
        nodes.insert(0, nodes.pop(k))
        label = f"move node '{nodes[0].name}' first"
    del gd.node[:]
    gd.node.extend(nodes)
    return label


def m_versions(gd, a, b, c):
    variant = c % 4
    if variant == 0:
        gd.versions.producer = 10**6
        return "versions.producer = 10**6"
    if variant == 1:
        gd.versions.min_consumer = 10**6
        return "versions.min_consumer = 10**6"
    if variant == 2:
        gd.versions.bad_consumers.append(gd.versions.producer)
        return "versions.bad_consumers = [producer]"
    gd.versions.producer = -1
    return "versions.producer = -1"


def m_strip_default_attrs(gd, a, b, c):
    """Remove attrs equal to their OpDef default, as exporters do (strip_default_attrs=True)."""
    from tensorflow.python.framework import op_def_registry

    nodes = list(gd.node) if c % 2 else [_pick(gd, a)] if len(gd.node) else []
    stripped = 0
    for n in nodes:
        op = op_def_registry.get(n.op)
        for attr in op.attr if op is not None else ():
            if (
                attr.HasField("default_value")
                and attr.name in n.attr
                and n.attr[attr.name] == attr.default_value
            ):
                del n.attr[attr.name]
                stripped += 1
    where = "every node" if c % 2 else f"node '{nodes[0].name}'" if nodes else "no node"
    return f"strip default-valued attrs from {where} ({stripped} attrs)"


def m_clear_graph(gd, a, b, c):
    keep = a % 4
    del gd.node[keep:]
    return f"keep only the first {keep} nodes"


MUTATIONS = {
    f.__name__[2:]: f
    for f in (
        m_delete_node,
        m_rename_node,
        m_rename_consistently,
        m_rename_scope,
        m_bad_input,
        m_wrong_output_index,
        m_add_control_input,
        m_remove_input,
        m_add_data_input,
        m_swap_inputs,
        m_change_op,
        m_delete_attr,
        m_corrupt_attr,
        m_bogus_colocation,
        m_duplicate_node,
        m_make_cycle,
        m_placeholder_shape,
        m_set_device,
        m_reorder,
        m_versions,
        m_strip_default_attrs,
        m_clear_graph,
    )
}


def mutate(fixture: str, mutations) -> tuple[object, list[str]]:
    """The fixture's GraphDef with `mutations` [(kind, a, b, c), ...] applied, and what each did."""
    gd = fixture_graph(fixture)
    done = []
    for kind, a, b, c in mutations:
        what = MUTATIONS[kind](gd, a, b, c)
        done.append(what or f"{kind}: not applicable")
    return gd, done


def replay(
    fixture: str, mutations=(), devices=2, rules="replicated-collective", device_type="CPU", verify_each=False
):
    """Re-run one graph case, letting the raw exception propagate; then verify the output."""
    from graphpass import api
    from graphpass.ir import verify
    from graphpass.ir.graph import Graph

    gd, done = mutate(fixture, mutations)
    for line in done:
        print("mutation:", line)
    if isinstance(rules, str) and "\n" in rules:
        from graphpass.pipeline import Pipeline

        rules = Pipeline.from_yaml(rules)
    out = api.rewrite(gd, devices=devices, rules=rules, device_type=device_type, verify_each=verify_each)
    verify.check(Graph(out))
    return out


# GRAPHPASS_FUZZ_MUTATIONS=kind,kind,... restricts the graph mutations (to look past a common bug)
_KINDS = [k for k in os.environ.get("GRAPHPASS_FUZZ_MUTATIONS", "").split(",") if k] or sorted(MUTATIONS)
mutation_st = st.tuples(
    st.sampled_from(_KINDS),
    st.integers(0, 4095),
    st.integers(0, 4095),
    st.integers(0, 4095),
)
towers_st = st.sampled_from([1, 2, 2, 3, 4, 4, 5, 8, 16])


def task_graph(o: Outcomes, reproducer: str, fixture, mutations, towers, rules, device_type, verify_each):
    gd, _ = mutate(fixture, mutations)
    check_rewrite(o, reproducer, gd, towers, rules, device_type, verify_each)


@pytest.mark.slow
def test_fuzz_graph_mutations(capsys, worker):
    """Structurally mutated training graphs: rewrite succeeds with a verifiable graph or raises
    GraphpassError."""
    outcomes = Outcomes("graph-mutations")

    @_settings(400)
    @given(
        fixture=st.sampled_from(ALL_FIXTURES),
        mutations=st.lists(mutation_st, min_size=1, max_size=3),
        towers=towers_st,
        rules=st.sampled_from(PRESETS),
        device_type=st.sampled_from(["CPU", "GPU"]),
        verify_each=st.booleans(),
    )
    def run(fixture, mutations, towers, rules, device_type, verify_each):
        outcomes.cases += 1
        _, done = mutate(fixture, mutations)
        reproducer = (
            f"{fixture} with [{'; '.join(done)}], rules={rules}, devices={towers}, {device_type}"
            f"{', verify_each' if verify_each else ''} -- replay({fixture!r}, {mutations!r}, devices={towers}, "
            f"rules={rules!r}, device_type={device_type!r}, verify_each={verify_each})"
        )
        task = ("graph", fixture, mutations, towers, rules, device_type, verify_each)
        worker.run(outcomes, reproducer, task)

    run()
    outcomes.finish(capsys)


# ---------------------------------------------------------------------------------------------
# Corrupt files: load_graph raises InvalidGraphError or returns a GraphDef (which rewrite takes).
# ---------------------------------------------------------------------------------------------


def _file_bytes(fixture: str, fmt: str) -> bytes:
    from tensorflow.core.protobuf import meta_graph_pb2

    from graphpass import io

    gd = fixture_graph(fixture)
    if fmt == "text":
        return io.serialize(gd, text=True)
    if fmt == "meta":
        meta = meta_graph_pb2.MetaGraphDef()
        meta.graph_def.CopyFrom(gd)
        return meta.SerializeToString(deterministic=True)
    return io.serialize(gd)


def corrupt(data: bytes, edits) -> tuple[bytes, list[str]]:
    """`data` with byte edits [(kind, position, value), ...] applied."""
    done = []
    buf = bytearray(data)
    for kind, pos, value in edits:
        p = pos % (len(buf) + 1)
        if kind == "truncate":
            del buf[p:]
            done.append(f"truncate at {p}")
        elif kind == "flip" and buf:
            p %= len(buf)
            buf[p] ^= 1 << (value % 8)
            done.append(f"flip bit {value % 8} of byte {p}")
        elif kind == "set" and buf:
            p %= len(buf)
            buf[p] = value % 256
            done.append(f"byte {p} = {value % 256}")
        elif kind == "insert":
            chunk = bytes([(value * 37 + k) % 256 for k in range(1 + value % 7)])
            buf[p:p] = chunk
            done.append(f"insert {chunk!r} at {p}")
        elif kind == "delete":
            del buf[p : p + 1 + value % 16]
            done.append(f"delete {1 + value % 16} bytes at {p}")
        elif kind == "garbage":
            buf = bytearray(bytes([(value * 131 + k * 7) % 256 for k in range(value % 64)]))
            done.append(f"replace all with {len(buf)} garbage bytes (seed {value})")
    return bytes(buf), done


byte_edit_st = st.tuples(
    st.sampled_from(["truncate", "flip", "flip", "set", "insert", "delete", "garbage"]),
    st.integers(0, 2**20),
    st.integers(0, 255),
)


def task_file(o: Outcomes, reproducer: str, path: str, towers: int):
    """load_graph raises InvalidGraphError or loads; what loads is rewritten."""
    from graphpass import io
    from graphpass.errors import GraphpassError, InvalidGraphError

    try:
        gd = io.load_graph(path)
    except InvalidGraphError as e:
        o.error(e, reproducer)
        return
    except GraphpassError as e:
        o.fail("crash", e, reproducer, f"load_graph raised {type(e).__name__}, not InvalidGraphError: {e}")
        return
    except Exception as e:  # noqa: BLE001
        o.fail("crash", e, reproducer)
        return
    o.ok("loaded")
    then = f"{reproducer}, then rewrite(devices={towers}, rules='replicated-collective', device_type='CPU')"
    check_rewrite(o, then, gd, towers, "replicated-collective", "CPU")


TASKS = {"graph": task_graph, "file": task_file}


@pytest.mark.slow
def test_fuzz_corrupt_files(capsys, tmp_path, worker):
    """Truncated / bit-flipped .pb, .pbtxt and .meta files: load_graph raises InvalidGraphError or
    returns a GraphDef; a GraphDef that loads is then rewritten (GraphpassError or verifiable)."""
    outcomes = Outcomes("corrupt-files")
    suffixes = {"binary": [".pb", ".graphdef", ""], "text": [".pbtxt", ".txt"], "meta": [".meta"]}

    @_settings(300)
    @given(
        fixture=st.sampled_from(ALL_FIXTURES),
        fmt=st.sampled_from(["binary", "binary", "text", "meta"]),
        suffix_pick=st.integers(0, 10),
        cross=st.integers(0, 9),
        edits=st.lists(byte_edit_st, min_size=1, max_size=4),
        towers=st.sampled_from([1, 2, 3]),
    )
    def run(fixture, fmt, suffix_pick, cross, edits, towers):
        outcomes.cases += 1
        data, done = corrupt(_file_bytes(fixture, fmt), edits)
        if cross == 0:  # a file whose suffix does not match its content
            fmt_suffix = {"binary": "text", "text": "binary", "meta": "binary"}[fmt]
        else:
            fmt_suffix = fmt
        options = suffixes[fmt_suffix]
        path = tmp_path / f"case{outcomes.cases}{options[suffix_pick % len(options)]}"
        path.write_bytes(data)
        reproducer = (
            f"load_graph('{path.suffix or '(no suffix)'}' file) of {fixture} as {fmt} with "
            f"[{'; '.join(done)}] -- corrupt(_file_bytes({fixture!r}, {fmt!r}), {edits!r})"
        )
        try:
            worker.run(outcomes, reproducer, ("file", str(path), towers))
        finally:
            path.unlink()

    run()
    outcomes.finish(capsys)


# ---------------------------------------------------------------------------------------------
# Rules YAML: from_yaml returns a Pipeline or raises ConfigError; a Pipeline then runs.
# ---------------------------------------------------------------------------------------------

PASS_NAMES = ["replicate", "place-variables", "pack-gradients", "allreduce"]
OPTION_VALUES = {
    "mode": ["replicated", "parameter_server", "mirrored", "", None, 1],
    "ps_device": ["/cpu:0", "/gpu:1", "/job:ps/task:0/device:CPU:0", "bogus", "", "gpu", "/gpu:99999999999"],
    "check_batch": [True, False, "yes", 0],
    "strategy": ["least-loaded", "balanced", "round-robin", "random", None],
    "devices": [["/cpu:0", "/cpu:1"], ["/cpu:0", "/cpu:0"], ["gpu:1"], [], ["bogus"], "/cpu:0", [1, 2], [""]],
    "small_bytes": [0, 1, 4096, -1, 10**30, 2.5, "4096"],
    "small_device": ["/cpu:0", "/gpu:3", "bogus", "", None],
    "num_split": [1, 2, 8, 0, -3, 10**20, 1.0, None],
    "bucket_bytes": [1, 4, 4096, 0, -1, 10**20, None],
    "min_pack_elements": [1, 1024, 0, -1, 10**20],
    "algorithm": [
        "nccl",
        "collective",
        "hierarchical",
        "naive",
        "colocate",
        "ring",
        "halving-doubling",
        "NCCL",
        "x",
    ],
    "average": [True, False, "true", None],
    "communication_hint": ["auto", "ring", "nccl", "RING", None],
}


def _yaml_scalars():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(
            ["replicate", "allreduce", "nccl", "/cpu:0", "passes", "ｒｅｐｌｉｃａｔｅ", "☃", "\x85"]
        ),
    )


yaml_values = st.recursive(
    _yaml_scalars(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def structured_rules(draw):
    """A rules document built as data: mostly well-formed passes with odd option values."""

    def option_value(key):
        if key in OPTION_VALUES and draw(st.integers(0, 4)):
            return draw(st.sampled_from(OPTION_VALUES[key]))
        return draw(yaml_values)

    def a_pass():
        name = draw(st.sampled_from(PASS_NAMES) | st.sampled_from(["shuffle", "", "Replicate", "allreduce "]))
        shape = draw(st.integers(0, 5))
        if shape == 0:
            return name
        if shape == 5:
            return draw(yaml_values)
        keys = draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)) | st.text(max_size=6), max_size=3))
        return {name: {k: option_value(k) for k in keys} if keys or draw(st.booleans()) else None}

    passes = [a_pass() for _ in range(draw(st.integers(0, 5)))]
    if draw(st.integers(0, 3)):  # usually start with replicate, so later passes get to run
        passes.insert(0, draw(st.sampled_from(["replicate", {"replicate": {"mode": "parameter_server"}}])))
    if draw(st.integers(0, 2)):
        passes.append({"allreduce": {"algorithm": draw(st.sampled_from(OPTION_VALUES["algorithm"][:7]))}})
    doc: object = {"passes": passes}
    extra = draw(st.integers(0, 7))
    if extra == 0:
        doc["description"] = draw(yaml_values)
    elif extra == 1:
        doc[draw(st.text(max_size=6))] = draw(yaml_values)
    elif extra == 2:
        doc = draw(yaml_values)  # not a mapping, or a mapping of anything
    text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans()))
    return text


RULES_TEMPLATES = [
    "",
    "   \n# only a comment\n",
    "---\n",
    "passes:\n",
    "passes: ~\n",
    "passes: []\n",
    "passes: {}\n",
    "passes: replicate\n",
    "- replicate\n",
    "replicate\n",
    "42\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: collective}\n---\npasses: []\n",
    "a: &a {algorithm: collective}\npasses:\n  - replicate\n  - allreduce: *a\n",
    "passes:\n  - replicate\n  - allreduce:\n      <<: {algorithm: naive}\n      average: false\n",
    "passes: &p\n  - replicate\n  - *p\n",
    "passes: &p [replicate, *p]\n",
    "passes:\n  - replicate: &o {mode: replicated}\n  - allreduce: *o\n",
    "passes:\n  - *undefined\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: !!binary aGVsbG8=}\n",
    "passes:\n  - replicate\n  - allreduce: {average: !!timestamp 2001-12-14}\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: !!python/object/apply:os.getcwd []}\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: !custom x}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: !!set {a, b}}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 1e400}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 0x7fffffffffffffffffffffff}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {bucket_bytes: .inf}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: .nan}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 1_000}\n  - allreduce: {algorithm: ring}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 0o17}\n  - allreduce: {algorithm: ring}\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: collective, algorithm: naive}\n",
    "passes:\n  - replicate\n  - ? [allreduce]\n    : {}\n",
    "passes:\n  - replicate\n  - {allreduce: {}, replicate: {}}\n",
    "passes:\n  - replicate\n  - allreduce: {? [a, b] : c}\n",
    "passes:\n\t- replicate\n",
    "\ufeffpasses:\n  - replicate\n  - allreduce: {algorithm: naive}\n",
    'passes:\n  - replicate\n  - allreduce: {algorithm: "na\\x00ive"}\n',
    "passes:\n  - replicate\x00\n",
    'passes:\n  - "line\\nbreak"\n',
    'passes:\n  - replicate\n  - "allreduce\\nx": {}\n',
    '"key\\nwith newline": 1\npasses: [replicate]\n',
    'passes:\n  - replicate:\n      "opt\\nion": 1\n',
    'passes:\n  - replicate:\n      mode: "para\\nmeter"\n',
    "%YAML 1.1\n---\npasses: [replicate, allreduce]\n",
    "%YAML 9.9\n---\npasses: [replicate]\n",
    "%TAG ! tag:example.com,2000:\n---\npasses: [!foo replicate]\n",
    "passes: [replicate, {place-variables: {devices: [/cpu:0, /cpu:0]}}]\n",
    "passes:\n  - replicate: {mode: parameter_server, ps_device: 'gpu:0'}\n  - place-variables: {devices: ['/job:ps/task:0/device:CPU:0'], small_bytes: 99999999999999999999}\n  - allreduce: {algorithm: colocate}\n",
    "passes: [{replicate: {mode: parameter_server}}, {place-variables: {strategy: balanced, devices: [x]}}, {allreduce: {algorithm: colocate}}]\n",
]


def _deep(depth: int, style: int) -> str:
    if style == 0:
        return "passes: " + "[" * depth + "]" * depth + "\n"
    if style == 1:
        return "passes: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if style == 2:
        body = "".join("  " * k + "- \n" for k in range(depth))
        return "passes:\n" + body
    # anchors and aliases fanning out (a "billion laughs" shape, small)
    lines = ["a0: &a0 [x, x]"] + [f"a{k}: &a{k} [*a{k - 1}, *a{k - 1}]" for k in range(1, min(depth, 30))]
    return "\n".join(lines) + "\npasses: [replicate]\n"


ALPHABET = ":-[]{}&*!|>'\"#%@`,? \n\t\x00\ufeff\u2028é0123456789abcdefgnrlptx"


@st.composite
def text_rules(draw):
    """Rules text: templates, presets with character edits, deep nesting, anchors, random text."""
    from graphpass.pipeline import presets_dir

    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return draw(st.sampled_from(RULES_TEMPLATES))
    if kind == 3:
        return _deep(draw(st.sampled_from([5, 50, 200, 400, 800, 1500, 3000])), draw(st.integers(0, 3)))
    if kind == 4:
        return draw(st.text(max_size=80))
    base = draw(st.sampled_from(PRESETS + ["__template__"]))
    text = (
        draw(st.sampled_from(RULES_TEMPLATES))
        if base == "__template__"
        else (presets_dir() / f"{base}.yaml").read_text()
    )
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 2))
        ch = draw(st.sampled_from(ALPHABET))
        if op == 0:
            text = text[:pos] + ch + text[pos:]
        elif op == 1:
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + ch + text[pos + 1 :]
    return text


@pytest.mark.slow
def test_fuzz_rules_yaml(capsys):
    """Mutated rules: Pipeline.from_yaml returns a Pipeline or raises ConfigError; a Pipeline that
    loads then rewrites a training graph (GraphpassError or verifiable output)."""
    from graphpass.errors import ConfigError, GraphpassError
    from graphpass.pipeline import Pipeline

    outcomes = Outcomes("rules-yaml")

    @_settings(400)
    @given(
        text=st.one_of(structured_rules(), text_rules()),
        fixture=st.sampled_from(TRAINING),
        towers=st.sampled_from([1, 2, 3, 4]),
        device_type=st.sampled_from(["CPU", "CPU", "GPU"]),
    )
    def run(text, fixture, towers, device_type):
        outcomes.cases += 1
        reproducer = f"Pipeline.from_yaml({text!r})"
        try:
            pipeline = Pipeline.from_yaml(text, "r.yaml")
        except ConfigError as e:
            outcomes.error(e, reproducer)
            return
        except GraphpassError as e:
            outcomes.fail(
                "crash", e, reproducer, f"from_yaml raised {type(e).__name__}, not ConfigError: {e}"
            )
            return
        except Exception as e:  # noqa: BLE001
            outcomes.fail("crash", e, reproducer)
            return
        outcomes.ok("parsed")
        check_rewrite(
            outcomes,
            f"replay({fixture!r}, [], devices={towers}, rules={text!r}, device_type={device_type!r})",
            fixture_graph(fixture),
            towers,
            pipeline,
            device_type,
        )

    run()
    outcomes.finish(capsys)


@pytest.mark.slow
def test_fuzz_rules_files(capsys, tmp_path):
    """Pipeline.load of odd preset names and of files with odd bytes raises ConfigError or loads."""
    from graphpass.errors import ConfigError
    from graphpass.pipeline import Pipeline

    outcomes = Outcomes("rules-files")
    names_st = st.sampled_from(
        ["", ".", "..", "/", "replicated", "REPLICATED-NCCL", "replicated-nccl ", "ps-naive.yaml", "../rules/ps-naive",
         "rules/ps-naive.yaml", "no/such/file.yaml", "x\x00y", "\x00", "~", "名前", "a" * 5000, "/dev/null", "/proc"]
    )  # fmt: skip

    @_settings(60)
    @given(
        name=names_st,
        content=st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"\xff\xfe\x00p",
                    b"passes: [replicate]\n\xff",
                    "passes: [replicate, allreduce]\n".encode("utf-16"),
                ]
            ),
            text_rules().map(lambda t: t.encode("utf-8", "surrogatepass")),
        ),
        suffix=st.sampled_from([".yaml", ".yml", ".txt", ""]),
        as_file=st.booleans(),
    )
    def run(name, content, suffix, as_file):
        outcomes.cases += 1
        if as_file:
            path = tmp_path / f"rules{outcomes.cases}{suffix}"
            path.write_bytes(content)
            target, reproducer = str(path), f"Pipeline.load(<file{suffix} with {content!r}>)"
        else:
            target, reproducer = name, f"Pipeline.load({name!r})"
        try:
            Pipeline.load(target)
        except ConfigError as e:
            outcomes.error(e, reproducer)
        except Exception as e:  # noqa: BLE001
            outcomes.fail("crash", e, reproducer)
        else:
            outcomes.ok("loaded")

    run()
    outcomes.finish(capsys)


# ---------------------------------------------------------------------------------------------
# Device specifications.
# ---------------------------------------------------------------------------------------------

DEVICE_NAMES = (
    "/gpu:0", "gpu:1", "/device:GPU:0", "/device:GPU:1", "/cpu:0", "cpu:1", "/device:CPU:2",
    "/job:ps/task:0/device:CPU:0", "/job:worker/replica:0/task:1/device:GPU:3", "/device:GPU:*", "GPU", "/gpu",
    "/device:TPU:0", "/device:XLA_GPU:0", "", " ", "/gpu:-1", "/gpu:99999999999999999999", "/gpu:0,/gpu:1",
    "/job:a:b", "/replica:x", "/task:1", "//", "/device:GPU:0/device:GPU:1", "gpu:1 ", "\t/cpu:3\n",
    "/device:gpu:0", "/job:ps", "/job:ps/device:CPU:0", "/job:localhost/replica:0/task:0/device:CPU:1",
)  # fmt: skip
COUNT_STRINGS = (
    "1", "2", " 3 ", "+4", "-1", "-0", "0", "00", "4.0", "1e3", "0x10", "٣", "²", "①", "४", "3 4", "",
    "9" * 3, "1" + "0" * 30, "-" + "9" * 30, "2,", ",2", "８",
)  # fmt: skip
DEVICE_TYPES = ("GPU", "CPU", "gpu", "cpu", "Gpu", " GPU", "GPU ", "TPU", "", "ＧＰＵ", "cpu:0", "ß", "ǆ")


def _count_of(spec) -> int | None:
    """The tower count `spec` asks for, if it is a count (as parse_devices reads it), else None."""
    if isinstance(spec, int):
        return spec
    s = spec.strip() if isinstance(spec, str) else None
    if s is not None and s.lstrip("-").isascii() and s.lstrip("-").isdigit():
        return int(s)
    return None


PS_DEVICES = (
    (),
    (),
    ("/job:ps/task:0/device:CPU:0",),
    ("/job:ps/task:0/device:CPU:0", "/job:ps/task:1/device:CPU:0"),
    ("/job:ps/task:0/device:CPU:0", "/job:ps/task:0/device:CPU:0"),
    ("/cpu:0",),
    ("bogus",),
    ("",),
)
device_spec_st = st.one_of(
    st.integers(-(10**9), 64),
    st.sampled_from([10**3, 10**5]),
    st.sampled_from(COUNT_STRINGS),
    st.lists(st.sampled_from(DEVICE_NAMES), max_size=6),
    st.lists(st.sampled_from(DEVICE_NAMES), max_size=6).map(",".join),
    st.text(max_size=20),
    st.lists(st.text(max_size=10), max_size=4),
)


@pytest.mark.slow
def test_fuzz_device_specs(capsys):
    """parse_devices returns one canonical device per requested tower (huge counts included), or
    raises ConfigError; a spec of at most MAX_TOWERS devices then drives a rewrite (with workers
    and parameter-server devices too)."""
    from graphpass import devices as devmod
    from graphpass.errors import ConfigError, GraphpassError

    outcomes = Outcomes("device-specs")

    @_settings(500)
    @given(
        spec=device_spec_st,
        device_type=st.sampled_from(["GPU", "CPU", "cpu"])
        | st.sampled_from(DEVICE_TYPES)
        | st.text(max_size=5),
        workers=st.sampled_from([None, None, None, 1, 2, 3, 0, -1, True]),
        ps_devices=st.sampled_from(PS_DEVICES),
        fixture=st.sampled_from(TRAINING),
        rules=st.sampled_from(PRESETS),
    )
    def run(spec, device_type, workers, ps_devices, fixture, rules):
        outcomes.cases += 1
        shown = f"<{spec} as int>" if isinstance(spec, int) and abs(spec) > 10**4 else repr(spec)
        reproducer = f"parse_devices({shown}, {device_type!r}, workers={workers!r})"
        count = _count_of(spec)
        if count is not None and count * (workers if isinstance(workers, int) and workers > 1 else 1) > 10**6:
            outcomes.ok("skipped: would allocate over 10**6 names")
            return
        try:
            parsed = devmod.parse_devices(spec, device_type, workers)
        except ConfigError as e:
            outcomes.error(e, reproducer)
            return
        except GraphpassError as e:
            outcomes.fail(
                "crash", e, reproducer, f"parse_devices raised {type(e).__name__}, not ConfigError: {e}"
            )
            return
        except Exception as e:  # noqa: BLE001
            outcomes.fail("crash", e, reproducer)
            return
        outcomes.ok("parsed")
        expected = None if count is None else count * (workers or 1)
        if expected is not None and len(parsed) != expected:
            outcomes.fail(
                "wrong-result", None, reproducer, f"{len(parsed)} devices for a count of {expected}"
            )
        if len(set(parsed)) != len(parsed):
            outcomes.fail("wrong-result", None, reproducer, f"repeated devices: {parsed}")
        if len(parsed) > MAX_TOWERS:
            return
        check_rewrite(
            outcomes,
            f"rewrite({fixture!r} fixture, devices={spec!r}, rules={rules!r}, device_type={device_type!r}, "
            f"workers={workers!r}, ps_devices={ps_devices!r})",
            fixture_graph(fixture),
            spec,
            rules,
            device_type,
            workers=workers,
            ps_devices=ps_devices,
        )

    run()
    outcomes.finish(capsys)


# ---------------------------------------------------------------------------------------------
# Odd arguments to the API: graph paths and objects, rules names and objects.
# ---------------------------------------------------------------------------------------------


def _graph_arguments(tmp: Path) -> list[tuple[str, object]]:
    from tensorflow.core.framework import graph_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    saved = tmp / "saved_model_dir"
    saved.mkdir(exist_ok=True)
    (saved / "saved_model.pb").write_bytes(b"")
    yaml_as_pb = tmp / "rules.pb"
    yaml_as_pb.write_text("passes: [replicate]\n")
    text_as_pb = tmp / "graph_text.pb"
    text_as_pb.write_bytes(_file_bytes("mlp_sgd", "text"))
    good = tmp / "mlp_sgd.pb"
    good.write_bytes(fixture_bytes("mlp_sgd"))
    return [
        ("''", ""),
        ("'.'", "."),
        ("'/'", "/"),
        ("a missing .pb", str(tmp / "missing.pb")),
        ("a directory", str(tmp)),
        ("a SavedModel directory", str(saved)),
        ("a 5000-character name", "a" * 5000 + ".pb"),
        ("a 300-character file name in a real directory", str(tmp / ("b" * 300 + ".pb"))),
        ("a name with a NUL byte", str(tmp / "x\x00y.pb")),
        ("/dev/null", "/dev/null"),
        ("a YAML file named .pb", str(yaml_as_pb)),
        ("a text GraphDef named .pb", str(text_as_pb)),
        ("a Path to a good .pb", good),
        ("bytes of a good .pb", fixture_bytes("mlp_sgd")),
        ("None", None),
        ("42", 42),
        ("an empty GraphDef", graph_pb2.GraphDef()),
        ("a MetaGraphDef", meta_graph_pb2.MetaGraphDef()),
        ("a list of nodes", list(fixture_graph("mlp_sgd").node)),
    ]


def _rules_arguments(tmp: Path) -> list[tuple[str, object]]:

    return [
        ("''", ""),
        ("a 5000-character name", "r" * 5000),
        ("a 5000-character .yaml name", "r" * 5000 + ".yaml"),
        ("a name with a NUL byte", "replicated\x00nccl"),
        ("a directory", str(tmp)),
        ("a Path to a directory", tmp),
        ("a directory named .yaml", str(_mkdir(tmp / "dir.yaml"))),
        ("/dev/null", "/dev/null"),
        ("a preset", "replicated-collective"),
        ("a Path preset name", Path("replicated-naive")),
        ("None", None),
        ("a list", ["replicate", "allreduce"]),
    ]


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


@pytest.mark.slow
def test_fuzz_api_arguments(capsys, tmp_path):
    """rewrite() with odd graph and rules arguments (paths, objects): GraphpassError or a
    verifiable GraphDef. Arguments outside the documented types (None, 42, lists) count too: a
    public API should refuse them with its own error."""
    outcomes = Outcomes("api-arguments")
    graphs = _graph_arguments(tmp_path)
    rules = _rules_arguments(tmp_path)

    @_settings(120)
    @given(
        g=st.integers(0, len(graphs) - 1),
        r=st.integers(0, len(rules) - 1),
        towers=st.sampled_from([1, 2, "2", [], ["/cpu:0", "/cpu:1"], None, 2.0]),
        device_type=st.sampled_from(["CPU", "GPU", "cpu", None]),
    )
    def run(g, r, towers, device_type):
        outcomes.cases += 1
        (g_label, graph), (r_label, rule) = graphs[g], rules[r]
        reproducer = (
            f"rewrite(<{g_label}>, devices={towers!r}, rules=<{r_label}>, device_type={device_type!r})"
        )
        check_rewrite(outcomes, reproducer, graph, towers, rule, device_type)

    run()
    outcomes.finish(capsys)


# ---------------------------------------------------------------------------------------------
# Regression tests for bugs this file found (strict xfail: they fail the suite once fixed, so the
# KNOWN_BUGS entry and the xfail mark get removed together).
# ---------------------------------------------------------------------------------------------


def _node(gd, name: str):
    return next(n for n in gd.node if n.name == name)


def _edit_delete(gd):
    gd.node.remove(_node(gd, "hidden/kernel/read"))


def _edit_colon_name(gd):
    _rename_everywhere(gd, {"x": "x:1"})


def _edit_class_not_utf8(gd):
    _node(gd, "hidden/MatMul").attr["_class"].list.s[:] = [b"loc:@\xff"]


def _edit_class_missing(gd):
    _node(gd, "hidden/MatMul").attr["_class"].list.s[:] = [b"loc:@no_such_node"]


def _edit_device(gd):
    _node(gd, "hidden/MatMul").device = "garbage"


def _edit_index_2_31(gd):
    _node(gd, "hidden/MatMul").input[0] = "x:2147483648"


def _edit_scope_beta2_power(gd):
    _rename_everywhere(
        gd, {n.name: "gradient_tape" + n.name[11:] for n in gd.node if n.name.startswith("beta2_power/")}
    )


def _edit_train_under_x_grad(gd):
    """gradients/ and train/ renamed x_grad/, a name like tf.gradients' scopes (no variable in it)."""
    _rename_everywhere(
        gd,
        {
            n.name: "x_grad/" + n.name.split("/", 1)[1]
            for n in gd.node
            if n.name.startswith(("gradients/", "train/"))
        },
    )


def _two_losses_one_variable():
    """A TF1 graph training one variable with two optimizers on two losses (alternating training)."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        w = tf1.get_variable("w", [4, 2], use_resource=False)
        y = tf.matmul(x, w)
        tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(y * y), name="train1")
        tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.abs(y)), name="train2")
        tf1.global_variables_initializer()
    return graph.as_graph_def()


def _edit_strip_defaults(gd):
    m_strip_default_attrs(gd, 0, 0, 1)


def _edit_variable_dtype_tensor(gd):
    slot = _node(gd, "layer1/bias/Adam_1")
    slot.attr["dtype"].Clear()
    slot.attr["dtype"].tensor.dtype = 1  # a tensor where a type belongs


# id -> (fixture name or GraphDef builder, edit of the GraphDef, devices, rules, device_type)
REPROS = {
    "dangling-input": ("mlp_sgd", _edit_delete, 2, "replicated-collective", "CPU"),
    "dangling-input-colon-name": ("mlp_sgd", _edit_colon_name, 2, "replicated-collective", "CPU"),
    "colocation-not-utf8": ("mlp_sgd", _edit_class_not_utf8, 2, "replicated-collective", "CPU"),
    "colocation-missing-target": ("mlp_sgd", _edit_class_missing, 2, "replicated-collective", "CPU"),
    "node-device-unparsable": ("mlp_sgd", _edit_device, 2, "replicated-collective", "CPU"),
    "output-index-segfault": ("mlp_sgd", _edit_index_2_31, 2, "replicated-collective", "CPU"),
    "one-tower-concat": ("mlp_sgd", None, 1, "replicated-collective", "CPU"),
    "default-attr-inserted": ("mlp_adam", _edit_strip_defaults, 2, "replicated-collective", "CPU"),
    "gradient-scope-misread": (
        "embedding_adam",
        _edit_scope_beta2_power,
        2,
        "replicated-hierarchical",
        "CPU",
    ),
    "nccl-shared-name": (_two_losses_one_variable, None, 2, "replicated-nccl", "GPU"),
    "variable-dtype-not-a-type": ("mlp_adam", _edit_variable_dtype_tensor, 2, "ps-balanced", "GPU"),
    # a tower node colocated with a tower-0-only one (a BatchNorm statistics update)
    "colocated-with-tower0-only": (
        lambda: mutate("batchnorm", [("bogus_colocation", 219, 36, 2090)])[0],
        None,
        2,
        "replicated-nccl",
        "GPU",
    ),
    # an Adam update with its variable and first slot swapped: variables each other's slots
    "slots-in-a-circle": (
        lambda: mutate("mlp_clip", [("swap_inputs", 349, 361, 168)])[0],
        None,
        8,
        "ps-balanced",
        "CPU",
    ),
    # the input's own NcclAllReduce (a mutated op) without its attributes
    "input-collective-inconsistent": (
        lambda: mutate("two_optimizers", [("change_op", 132, 589, 177)])[0],
        None,
        2,
        "ps-balanced",
        "CPU",
    ),
    # a user's write of an Adam slot outside the training step, from a value the towers compute
    "mirror-reads-tower-value": (
        lambda: mutate("embedding_adam", [("duplicate_node", 720, 207, 45)] * 3)[0],
        None,
        4,
        "replicated-hierarchical",
        "GPU",
    ),
    # user scopes renamed x_grad/, like tf.gradients' own: the global step's increment was
    # gathered as sparse indices (the scalar check ran for guessed scopes only)
    "scalar-sparse-part-under-grad-scope": (
        "conv_momentum",
        _edit_train_under_x_grad,
        2,
        "replicated-hierarchical",
        "CPU",
    ),
    # every variable of a layer under a user scope named x_grad/: initializers were taken for
    # gradient-driven updates, variable reads for gradients
    "variable-under-grad-named-scope": (
        lambda: mutate(
            "lstm_v1",
            [
                ("rename_scope", 771, 383, 1814),
                ("rename_scope", 2675, 58, 864),
                ("rename_scope", 2675, 58, 864),
            ],
        )[0],
        None,
        4,
        "replicated-hierarchical",
        "CPU",
    ),
    # Adam's beta1 power update renamed into the gradient scope: a scalar taken for the gradient
    # of a [16] bias, packed with the others into pieces that do not add up
    "assign-update-misread-gradient": (
        lambda: mutate(
            "mlp_clip",
            [
                ("rename_consistently", 1574, 490, 474),
                ("rename_consistently", 333, 698, 1574),
                ("rename_consistently", 1906, 1666, 1666),
            ],
        )[0],
        None,
        2,
        "replicated-hierarchical",
        "GPU",
    ),
    # user scopes renamed gradient_tape/: a scalar constant was gathered as sparse indices
    "scalar-taken-for-sparse-indices": (
        lambda: mutate(
            "two_optimizers",
            [
                ("rename_scope", 2128, 217, 353),
                ("rename_scope", 81, 277, 835),
                ("rename_scope", 2128, 217, 353),
            ],
        )[0],
        None,
        2,
        "replicated-naive",
        "CPU",
    ),
}


def task_repro(o: Outcomes, reproducer: str, name: str):
    fixture, edit, devices, rules, device_type = REPROS[name]
    gd = fixture() if callable(fixture) else fixture_graph(fixture)
    if edit is not None:
        edit(gd)
    check_rewrite(o, reproducer, gd, devices, rules, device_type)


TASKS["repro"] = task_repro


def _ends_well(o: Outcomes) -> None:
    """No failure, and no InternalError (bad input is the user's error, not graphpass's bug)."""
    assert not o.failures and not o.internal, o.report(list(o.failures.values()) + list(o.internal.values()))


def _regression(name: str, worker=None) -> None:
    o = Outcomes(f"regression {name}", known_bugs=False)
    if worker is None:
        task_repro(o, name, name)
    else:
        worker.run(o, name, ("repro", name))
    _ends_well(o)


def _call_ends_well(fn, *args, **kwargs) -> None:
    o = Outcomes("regression", known_bugs=False)
    _expect(o, "call", fn, *args, **kwargs)
    _ends_well(o)


@pytest.mark.parametrize("name", ["dangling-input", "dangling-input-colon-name"])
def test_regression_dangling_input(name):
    _regression(name)


def test_regression_colocation_not_utf8():
    _regression("colocation-not-utf8")


def test_regression_colocation_missing_target():
    _regression("colocation-missing-target")


def test_regression_node_device_unparsable():
    _regression("node-device-unparsable")


def test_regression_output_index_segfault(worker):
    if not ISOLATE:
        pytest.skip("would crash the test process without GRAPHPASS_FUZZ_ISOLATE")
    _regression("output-index-segfault", worker)


def test_regression_default_attr_inserted():
    _regression("default-attr-inserted")


def test_regression_gradient_scope_misread():
    _regression("gradient-scope-misread")


def test_regression_nccl_shared_name():
    _regression("nccl-shared-name")


def test_regression_one_tower_concat():
    _regression("one-tower-concat")


def test_regression_variable_dtype_not_a_type():
    _regression("variable-dtype-not-a-type")


def test_regression_scalar_taken_for_sparse_indices():
    _regression("scalar-taken-for-sparse-indices")


def test_regression_scalar_sparse_part_under_grad_scope():
    _regression("scalar-sparse-part-under-grad-scope")


def test_regression_variable_under_grad_named_scope():
    _regression("variable-under-grad-named-scope")


def test_regression_assign_update_misread_gradient():
    _regression("assign-update-misread-gradient")


def test_regression_colocated_with_tower0_only():
    _regression("colocated-with-tower0-only")


def test_regression_slots_in_a_circle(worker):
    _regression("slots-in-a-circle", worker)  # hung in placement


def test_regression_input_collective_inconsistent():
    _regression("input-collective-inconsistent")


@pytest.mark.parametrize("spec", ["²", "①"])
def test_regression_devices_unicode_digit(spec):
    from graphpass.devices import parse_devices

    _call_ends_well(parse_devices, spec)


@pytest.mark.parametrize(
    "value", ["!!timestamp 2001-12-1b", "!!int abc", "[!!float x]", "!!timestamp 2001-13-45"]
)
def test_regression_yaml_value_unfit_for_its_tag(value):
    """Found by exploration: PyYAML's tag constructors raised AttributeError or ValueError."""
    from graphpass.errors import ConfigError
    from graphpass.pipeline import Pipeline

    with pytest.raises(ConfigError, match=r"<rules>:3: a value does not fit its explicit YAML tag"):
        Pipeline.from_yaml(f"passes:\n  - replicate\n  - allreduce: {{average: {value}}}\n")
    _call_ends_well(Pipeline.from_yaml, f"passes:\n  - replicate\n  - allreduce: {{average: {value}}}\n")


def test_regression_yaml_deep_nesting():
    from graphpass.pipeline import Pipeline

    _call_ends_well(Pipeline.from_yaml, _deep(1000, 0))


@pytest.mark.parametrize("what", ["rules", "graph"])
def test_regression_path_too_long(what, tmp_path):
    from graphpass import io
    from graphpass.pipeline import Pipeline

    if what == "rules":
        _call_ends_well(Pipeline.load, "r" * 300)
    else:
        _call_ends_well(io.load_graph, tmp_path / ("g" * 300 + ".pb"))


def test_regression_path_nul_byte(tmp_path):
    from graphpass import io

    _call_ends_well(io.load_graph, str(tmp_path / "x\x00y.pb"))


@pytest.mark.parametrize(
    "case",
    ["pass name", "option name", "top-level key", "device type", "device name", "op type"],
)
def test_regression_message_newline(case):
    from graphpass import api
    from graphpass.devices import parse_devices
    from graphpass.pipeline import Pipeline

    if case == "pass name":
        _call_ends_well(Pipeline.from_yaml, 'passes:\n  - replicate\n  - "allreduce\\nx"\n')
    elif case == "option name":
        _call_ends_well(Pipeline.from_yaml, 'passes:\n  - replicate:\n      "opt\\nion": 1\n')
    elif case == "top-level key":
        _call_ends_well(Pipeline.from_yaml, '"key\\nwith newline": 1\npasses: [replicate]\n')
    elif case == "device type":
        _call_ends_well(parse_devices, 2, "G\nPU")
    elif case == "device name":
        _call_ends_well(parse_devices, ["/gpu:0\n/gpu:1x"])
    else:
        gd = fixture_graph("mlp_sgd")
        _node(gd, "hidden/MatMul").op = "Mat\nMul"
        _call_ends_well(api.rewrite, gd, devices=2, rules="replicated-collective", device_type="CPU")


@pytest.mark.parametrize("devices,device_type", [(2.0, "CPU"), (None, "CPU"), (2, None)])
def test_regression_api_argument_types(devices, device_type):
    from graphpass import api

    gd = fixture_graph("mlp_sgd")
    _call_ends_well(api.rewrite, gd, devices=devices, rules="replicated-collective", device_type=device_type)


def test_regression_empty_pipeline():
    from graphpass.errors import ConfigError
    from graphpass.pipeline import Pipeline

    with pytest.raises(ConfigError, match="a pipeline starts with the 'replicate' pass"):
        Pipeline([])


def test_regression_kept_node_colocated_with_dropped_one():
    """Found by exploration: a kept original colocated with a dropped region node (InternalError)."""
    from graphpass import api

    graph, _ = mutate(
        "embedding_adagrad",
        [
            ("duplicate_node", 3410, 73, 553),
            ("duplicate_node", 3410, 73, 553),
            ("duplicate_node", 649, 121, 583),
        ],
    )
    _call_ends_well(api.rewrite, graph, devices=2, rules="ps-naive", device_type="GPU", verify_each=True)


def test_regression_mirror_reads_tower_value():
    """Found by exploration: a write of a replicated variable outside the training step that reads
    a value the towers compute (a copy of sparse Adam's slot decay, m = m * beta1) had per-tower
    mirrors reading the dropped original (InternalError). They read what the original reads, tower
    0's copy; run after a step, every replica still equals its canonical variable."""
    import numpy as np

    from graphpass import api
    from graphpass.execution import Runner

    _regression("mirror-reads-tower-value")
    graph, _ = mutate("embedding_adam", [("duplicate_node", 720, 207, 45)] * 3)
    out = api.rewrite(graph, devices=2, rules="replicated-collective", device_type="CPU")
    rng = np.random.default_rng(0)
    feeds = {"ids": rng.integers(0, 12, (4, 3)).astype(np.int32), "y": rng.integers(0, 4, 4)}
    slot = "embedding/Adam"
    with Runner(out, num_cpus=2, timeout_s=60) as r:
        r.run("init")
        r.run("train", feeds)
        before = r.variables([slot])[slot]
        r.run("train/update_embedding/Assign_dup")
        after = r.variables([slot, f"tower1/{slot}"])
    assert np.any(before != 0) and np.allclose(after[slot], before * 0.9)
    assert np.array_equal(after[slot], after[f"tower1/{slot}"])
