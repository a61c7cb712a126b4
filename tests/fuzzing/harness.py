"""The fuzz harness: case settings, the oracle that classifies outcomes, and the worker process.

Every case must end one of two ways:
- success: `graphpass.rewrite` returns a GraphDef that `verify.check` accepts, that TensorFlow's
  importer accepts whenever it accepts the input, whose every node is on a device the rewrite was
  configured with (see `device_problems`), and the input GraphDef is left unmodified (or
  `load_graph` / `Pipeline.from_yaml` / `Pipeline.load` / `parse_devices` return);
- a `GraphpassError` (any subclass) whose message is one non-empty line.
Anything else (KeyError, TypeError, protobuf or TensorFlow errors, RecursionError, a segfault or a
hang) is a failure. InternalError is allowed but counted, since it means "a bug in graphpass".

Cases are derandomized (the same cases on every run) and bounded so that each file runs in well
under a minute; each fuzz test prints how many cases it tried and how they ended. To explore, set
GRAPHPASS_FUZZ_EXAMPLES=N (N cases per test, new ones each run unless GRAPHPASS_FUZZ_SEED is set;
InternalError sources are listed too) and optionally GRAPHPASS_FUZZ_MUTATIONS=kind,kind (only those
graph mutations, to look past a frequent bug).

Cases that hand mutated graphs to TensorFlow run in a worker process (see Worker) so that a segfault
in TensorFlow's C++ code is reported as a failure instead of killing pytest. A worker runs the tasks
registered in TASKS by name (graphs, files and repros register theirs; the worker imports them).

Failures are collected, deduplicated by (kind, exception type, innermost graphpass frames) and
reported together, each with a reproducer; `replay(...)` re-runs a graph case and lets the raw
exception propagate, e.g.
    python -c "from tests.fuzzing.graphs import replay; replay('mlp_sgd', [('delete_node', 3, 0, 0)])"
Bugs already reported are listed in KNOWN_BUGS (a matching case counts as 'known bug', not as a
failure) and pinned by the strict-xfail regression tests of tests/test_fuzz_repros.py and
tests/test_fuzz_regressions.py: once a bug is fixed its regression test XPASSes, which fails the
suite until the xfail mark and the KNOWN_BUGS entry are removed.
"""

from __future__ import annotations

import collections
import faulthandler
import functools
import importlib
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
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

from graphpass.pipeline import preset_names  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Every fixture graph (small ones: each case rewrites one), the inference-only one included.
ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.pb") if p.stat().st_size < 200_000)
TRAINING = [f for f in ALL_FIXTURES if not f.startswith("inference")]
MAX_TOWERS = 16  # rewrites never get more towers (memory and time); huge counts only go to parse_devices

_ENV_EXAMPLES = int(os.environ.get("GRAPHPASS_FUZZ_EXAMPLES", "0") or 0)
_ENV_SEED = os.environ.get("GRAPHPASS_FUZZ_SEED")
_LOG = os.environ.get("GRAPHPASS_FUZZ_LOG")  # exploration: append each case's reproducer here first
ISOLATE = os.environ.get("GRAPHPASS_FUZZ_ISOLATE", "1") != "0"  # see Worker
EXAMPLES = _ENV_EXAMPLES  # N from GRAPHPASS_FUZZ_EXAMPLES, 0 when not exploring


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
# Registries: the names cases draw from come from graphpass, so a new preset, pass or algorithm
# is fuzzed without an edit here.
# ---------------------------------------------------------------------------------------------


def algorithm_names() -> list[str]:
    """Every all-reduce algorithm's name, in registry order (the one place to switch registries)."""
    from graphpass import algorithms

    names = getattr(algorithms, "names", None)
    return list(names()) if callable(names) else list(algorithms.REGISTRY)


def pass_names() -> list[str]:
    """Every pass's name, in registry order."""
    from graphpass import passes

    return list(passes.REGISTRY)


PRESETS = preset_names()


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


# Tasks a Worker runs, by name: (outcomes, reproducer, *args) -> None. The modules in TASK_MODULES
# register theirs on import; the worker process imports them all before its first case.
TASKS: dict[str, object] = {}
TASK_MODULES = ("tests.fuzzing.graphs", "tests.fuzzing.files", "tests.fuzzing.repros")


def _load_tasks() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)


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
            _load_tasks()
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
    _load_tasks()
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


@pytest.fixture(scope="module", name="worker")
def worker_fixture():
    """The `worker` fixture: a test module imports `worker_fixture` to use it."""
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
    for problem in device_problems(graph, out, devices, rules, device_type, extra)[:1]:
        outcomes.fail("bad-device", None, reproducer, problem)
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


def _host_cpus(devices) -> set[str]:
    from graphpass import devices as devmod

    return {devmod.host_of(d) for d in devices}


def configured_devices(devices, rules, device_type, extra) -> tuple[list[str], list[str]]:
    """(tower devices, parameter-server devices) of a rewrite that succeeded with these arguments:
    the towers as `parse_devices` reads `devices` (with `workers`), and the ps devices as given in
    `ps_devices` or in the rules' options (replicate's ps_device, place-variables' devices and
    small_device)."""
    from graphpass import devices as devmod
    from graphpass.errors import GraphpassError
    from graphpass.pipeline import Pipeline

    towers = devmod.parse_devices(devices, device_type, extra.get("workers"))
    ps = [devmod.canonical(d) for d in extra.get("ps_devices", ())]
    try:
        pipeline = rules if isinstance(rules, Pipeline) else Pipeline.load(rules)
    except GraphpassError:
        return towers, ps
    for p in pipeline.passes:
        for option, many in (("ps_device", False), ("devices", True), ("small_device", False)):
            value = getattr(p, option, None) if p.name in ("replicate", "place-variables") else None
            if value:
                ps += devmod.parse_devices(value) if many else [devmod.canonical(value)]
    return towers, ps


def _input_graph_def(graph):
    """The GraphDef `graph` (a GraphDef or a path) holds, or None."""
    from tensorflow.core.framework import graph_pb2

    if isinstance(graph, graph_pb2.GraphDef):
        return graph
    from graphpass import io

    try:
        return io.load_graph(graph)
    except Exception:  # noqa: BLE001 - rewrite read it, so this does not happen
        return None


def device_problems(graph, out, devices, rules, device_type, extra) -> list[str]:
    """Nodes of the rewritten `out` on a device nobody asked for, one line each.

    The rule (graphpass.devices, graphpass.placement, passes/replicate/devices.py): a node of the
    output is on
    - a tower device (`parse_devices(devices, device_type, workers)`), or the host CPU of one
      (`host_of`: ops with no kernel on the tower's device type, and CPU-pinned tower nodes);
    - a parameter-server device (`ps_devices`, replicate's `ps_device`, place-variables' `devices`
      and `small_device`), or the host CPU of one (a variable group with no GPU kernel);
    - or a device some node of the input already had: placement leaves placed nodes where they are
      (`settle` skips them, replicated mode keeps a placed shared variable's device) and colocated
      nodes follow their target. The empty device only on a node that had it in the input under the
      same name (every node graphpass makes or copies gets a device).
    Nodes of the graph's function library are held to the same rule."""
    towers, ps = configured_devices(devices, rules, device_type, extra)
    allowed = set(towers) | _host_cpus(towers) | set(ps) | _host_cpus(ps)
    source = _input_graph_def(graph)
    before: dict[str, str] = {}
    kept: set[str] = set()
    if source is not None:
        before = {n.name: n.device for n in source.node}
        kept = set(before.values())
        kept |= {n.device for f in source.library.function for n in f.node_def}
    kept.discard("")

    def problem(where: str, node, unnamed_empty_ok: bool) -> str | None:
        d = node.device
        if d in allowed or d in kept or (d == "" and unnamed_empty_ok):
            return None
        shown = ", ".join(sorted(allowed | kept)) or "none"
        return (
            f"{where}'{node.name}' ({node.op}) is on device '{d}', not a tower device, a host CPU of one, "
            f"a parameter-server device or an input node's device (input node device: "
            f"{before.get(node.name, '<no such input node>')!r}; allowed: {shown})"
        )

    found = [p for n in out.node if (p := problem("node ", n, before.get(n.name, None) == "")) is not None]
    for f in out.library.function:
        found += [
            p
            for n in f.node_def
            if (p := problem(f"function {f.signature.name}: node ", n, True)) is not None
        ]
    return found


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
            c_graph = graph._c_graph  # noqa: SLF001 - the C importer, as graphpass.shapes calls it
            c_api.TF_GraphImportGraphDefWithResults(c_graph, buf, opts.options)
    except Exception as e:  # noqa: BLE001 - TensorFlow's status errors
        return _one_line(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 200)
    return None


def rename_everywhere(gd, mapping: dict[str, str]) -> None:
    """Rename nodes and every reference to them (inputs and colocation), in place."""
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


# ---------------------------------------------------------------------------------------------
# Fixture graphs (parsed afresh for every case: cases edit them).
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
