"""Benchmarks for graphpass: rewrite time and memory on large graphs, and gradient-exchange step time.

    python tools/make_big_fixtures.py                      # once: build/bench/*.pb
    python tools/bench.py [--cases a,b] [--repeat 3] [--json out.json]
    python tools/bench.py profile resnet50-k8            # where one case's rewrite time goes
    python tools/bench.py --cases resnet50-k64-bare,chain-k2   # refusal and size cases (issue 21)
    python tools/bench.py exchange [--devices 4] [--steps 10] [--json out.json]

Run by hand, never from the tests. Each rewrite case runs in a fresh subprocess so its peak RSS
(ru_maxrss) belongs to that case alone; the FLOOR is the time to parse the input GraphDef plus the
time to serialize the output GraphDef, measured in the same process. A case whose input must be
refused (a graph graphpass already replicated, without its manifest) is timed to the refusal,
against the time to parse its input (best of the repeats, and the process's first parse, which
is what a refusing process pays: a process that only parses it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "build" / "bench"
MARK = "GRAPHPASS_BENCH_RESULT "
MIB = 1024 * 1024
REPEAT_BUDGET_S = 60.0  # stop repeating a case once its rewrites took this long in total


@dataclass(frozen=True)
class Case:
    """One rewrite to measure: a graph, a tower count and a rules preset."""

    name: str
    graph: str
    devices: int
    rules: str = "replicated-nccl"
    device_type: str = "GPU"
    ps_devices: tuple[str, ...] = ()
    refused: bool = False  # the input must be refused: time the refusal against the parse


def _resnet(k: int) -> Case:
    return Case(f"resnet50-k{k}", "build/bench/resnet50.pb", k)


def _ps(job: str) -> tuple[str, ...]:
    return tuple(f"/job:{job}/task:{t}/device:CPU:0" for t in range(2))


# The same graph with the strings graphpass's tower names are made of (a `tower/` scope over every
# node, `notes_tower`, a constant naming `tower1/...`) and parameter servers on a job named
# `tower1`: each must rewrite within 1.2x of its plain twin (issue 14).
TOWER_STRINGS = [
    Case("resnet50-tower-k8", "build/bench/resnet50_tower.pb", 8),
    Case("resnet50-tower-k32", "build/bench/resnet50_tower.pb", 32),
    Case("resnet50-ps-k8", "build/bench/resnet50.pb", 8, "ps-least-loaded", ps_devices=_ps("ps")),
    Case(
        "resnet50-tower-psjob-k8",
        "build/bench/resnet50_tower.pb",
        8,
        "ps-least-loaded",
        ps_devices=_ps("tower1"),
    ),
]


CASES = {
    c.name: c
    for c in [
        Case("mlp-k8", "examples/mlp.pb", 8),
        _resnet(2),
        _resnet(8),
        _resnet(32),
        _resnet(64),
        Case("mid-k8", "build/bench/mid.pb", 8),
        Case("deep100k-k8", "build/bench/deep100k.pb", 8),
        *TOWER_STRINGS,
        # Issue 21: every analysis linear. resnet50 rewritten at K=64 without its manifest, fed
        # back in (refused, by what the analysis finds); a million Identity ops in a row (the
        # chain's length is make_big_fixtures.py's --chain-length).
        Case("resnet50-k64-bare", "build/bench/resnet50_k64_bare.pb", 64, refused=True),
        Case("chain-k2", "build/bench/chain.pb", 2),
    ]
}


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


# ---------------------------------------------------------------- rewrite cases (worker side)


def _options(case: Case) -> dict:
    return {
        "devices": case.devices,
        "rules": case.rules,
        "device_type": case.device_type,
        "ps_devices": case.ps_devices,
    }


def _floor_parse(graphpass, path: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        graph_def, seconds = _timed(graphpass.load_graph, path)
        best = min(best, seconds)
        del graph_def
    gc.collect()
    return best


def _rewrite(graphpass, case: Case, path: Path, repeat: int):
    """The last run's output bytes, the fastest run's Report and wall time, and the number of runs.
    A run is `rewrite_to_buffer`: from the input file to the serialized output, all that
    `graphpass rewrite` does but write the file."""
    runs, spent = 0, 0.0
    out = best_report = None
    best = float("inf")
    while runs < repeat and spent < REPEAT_BUDGET_S:
        out = None
        gc.collect()
        (out, report), seconds = _timed(graphpass.rewrite_to_buffer, path, **_options(case))
        runs, spent = runs + 1, spent + seconds
        if seconds < best:
            best, best_report = seconds, report
    return out, best_report, best, runs


def _refusal(graphpass, case: Case, path: Path, repeat: int) -> tuple[str, float, int]:
    """The refusal's message, the fastest refusal's wall time, and the number of runs."""
    runs, spent, best, message = 0, 0.0, float("inf"), ""
    while runs < repeat and spent < REPEAT_BUDGET_S:
        gc.collect()
        start = time.perf_counter()
        try:
            graphpass.rewrite_to_buffer(path, **_options(case))
        except graphpass.GraphpassError as e:
            seconds, message = time.perf_counter() - start, str(e)
        else:
            raise AssertionError(f"{case.name}: the rewrite was not refused")
        runs, spent, best = runs + 1, spent + seconds, min(best, seconds)
    return message, best, runs


def measure_refusal(case: Case, repeat: int) -> dict:
    """How long a rewrite of `case`'s input takes to refuse it, against parsing it."""
    import tensorflow  # noqa: F401

    tf_rss = peak_rss_mib()
    import graphpass

    path = ROOT / case.graph
    graph_def, first_s = _timed(graphpass.load_graph, path)  # the process's first parse: as a refusal's
    nodes_in = len(graph_def.node)
    del graph_def
    parse_s = _floor_parse(graphpass, path, repeat)
    message, refuse_s, runs = _refusal(graphpass, case, path, repeat)
    return {
        "case": case.name,
        "graph": case.graph,
        "devices": case.devices,
        "nodes_in": nodes_in,
        "in_mib": path.stat().st_size / MIB,
        "runs": runs,
        "refuse_s": refuse_s,
        "parse_s": parse_s,
        "first_parse_s": first_s,
        "ratio": refuse_s / parse_s,
        "first_ratio": refuse_s / first_s,
        "us_per_node": 1e6 * refuse_s / nodes_in,
        "tf_rss_mib": tf_rss,
        "peak_rss_mib": peak_rss_mib(),
        "refusal": message.splitlines()[0][:160],
    }


def measure_case(case: Case, repeat: int) -> dict:
    """Everything the table reports for `case`, measured in this (fresh) process."""
    if case.refused:
        return measure_refusal(case, repeat)
    import tensorflow  # noqa: F401  (the baseline: what importing TensorFlow alone costs)

    tf_rss = peak_rss_mib()
    import graphpass
    from graphpass import io

    path = ROOT / case.graph
    parse_s = _floor_parse(graphpass, path, repeat)
    data, report, rewrite_s, runs = _rewrite(graphpass, case, path, repeat)
    peak = peak_rss_mib()  # the rewrite's, before the floor parses its output
    out = io.GraphDef.FromString(data)
    serialize_s = float("inf")
    for _ in range(repeat):
        again, seconds = _timed(io.serialize, out)
        serialize_s = min(serialize_s, seconds)
        if again != data:
            raise AssertionError("the rewrite's bytes differ from serializing its GraphDef")
        del again
    del out
    floor_s = parse_s + serialize_s
    out_mib = len(data) / MIB
    bound = 3 * out_mib + tf_rss
    passes_s = sum(p.seconds for p in report.passes)
    return {
        "case": case.name,
        "graph": case.graph,
        "devices": case.devices,
        "rules": case.rules,
        "device_type": case.device_type,
        "nodes_in": report.nodes_in,
        "nodes_out": report.nodes_out,
        "out_mib": out_mib,
        "runs": runs,
        "rewrite_s": rewrite_s,
        "passes_s": passes_s,
        "other_s": report.seconds - passes_s,
        "passes": [[p.pass_.name, p.seconds, p.result.summary] for p in report.passes],
        "parse_s": parse_s,
        "serialize_s": serialize_s,
        "floor_s": floor_s,
        "ratio": rewrite_s / floor_s,
        "us_per_node": 1e6 * rewrite_s / report.nodes_out,
        "tf_rss_mib": tf_rss,
        "peak_rss_mib": peak,
        "rss_bound_mib": bound,
        "rss_ratio": peak / bound,
    }


def worker(name: str, repeat: int) -> int:
    try:
        result = measure_case(CASES[name], repeat)
    except Exception as e:  # a graphpass error is a result to report, not a crash of the benchmark
        result = {"case": name, "error": f"{type(e).__name__}: {e}"}
    print(MARK + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- rewrite cases (driver side)


def run_case(case: Case, repeat: int, timeout: float) -> dict:
    """Run `case` in a fresh interpreter and return its result dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", case.name, "--repeat", str(repeat)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"case": case.name, "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return {"case": case.name, "error": f"worker exited {proc.returncode} without a result: {tail}"}


REWRITE_COLUMNS = [
    ("case", "{}", "case"),
    ("K", "{}", "devices"),
    ("nodes in", "{:,}", "nodes_in"),
    ("nodes out", "{:,}", "nodes_out"),
    ("out MiB", "{:.1f}", "out_mib"),
    ("rewrite s", "{:.3f}", "rewrite_s"),
    ("floor s", "{:.3f}", "floor_s"),
    ("ratio", "{:.1f}x", "ratio"),
    ("us/node", "{:.1f}", "us_per_node"),
    ("TF MiB", "{:.0f}", "tf_rss_mib"),
    ("peak MiB", "{:.0f}", "peak_rss_mib"),
    ("bound MiB", "{:.0f}", "rss_bound_mib"),
    ("peak/bound", "{:.2f}", "rss_ratio"),
]

REFUSAL_COLUMNS = [
    *REWRITE_COLUMNS[:3],  # case, K, nodes in
    ("in MiB", "{:.1f}", "in_mib"),
    ("refusal s", "{:.3f}", "refuse_s"),
    ("parse s", "{:.3f}", "parse_s"),
    ("ratio", "{:.1f}x", "ratio"),
    ("first parse s", "{:.3f}", "first_parse_s"),
    ("ratio to it", "{:.1f}x", "first_ratio"),
    ("us/node", "{:.1f}", "us_per_node"),
    ("peak MiB", "{:.0f}", "peak_rss_mib"),
    ("refused with", "{}", "refusal"),
]

SPLIT_COLUMNS = [
    ("case", "{}", "case"),
    ("parse s", "{:.3f}", "parse_s"),
    ("serialize s", "{:.3f}", "serialize_s"),
    ("load+analyse+verify+emit s", "{:.3f}", "other_s"),
    ("passes s", "{:.3f}", "passes_s"),
    ("per pass", "{}", "passes"),
]


def _cell(fmt: str, value) -> str:
    if isinstance(value, list):
        return ", ".join(f"{name} {seconds:.2f}" for name, seconds, _ in value)
    return fmt.format(value)


def table(rows: list[dict], columns) -> str:
    """A Markdown table of `rows`; rows with an error span the table with their message."""
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |"]
    lines.append("|" + "|".join(" --- " for _ in columns) + "|")
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['case']} | ERROR: {row['error']} |" + " |" * (len(columns) - 2))
            continue
        lines.append("| " + " | ".join(_cell(fmt, row[key]) for _, fmt, key in columns) + " |")
    return "\n".join(lines)


def scaling_note(rows: list[dict]) -> str:
    """The spread of time per output node over the resnet50 K-scaling cases."""
    scaling = [r for r in rows if r["case"].startswith("resnet50-") and "error" not in r]
    per_node = {r["devices"]: r["us_per_node"] for r in scaling}
    if len(per_node) < 2:
        return ""
    lo, hi = min(per_node.values()), max(per_node.values())
    ks = ", ".join(f"K={k}: {v:.1f}" for k, v in sorted(per_node.items()))
    return f"time per output node (us) {ks}; max/min {hi / lo:.2f}x"


def cmd_rewrite(args) -> int:
    names = args.cases.split(",") if args.cases else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append(run_case(CASES[name], args.repeat, args.timeout))
    refusals = [r for r in rows if CASES[r["case"]].refused]
    rows = [r for r in rows if not CASES[r["case"]].refused]
    if rows:
        print(table(rows, REWRITE_COLUMNS))
        print()
        print(table(rows, SPLIT_COLUMNS))
    if refusals:
        print("\n" + table(refusals, REFUSAL_COLUMNS))
    note = scaling_note(rows)
    if note:
        print("\n" + note)
    _write_json(args.json, {"kind": "rewrite", "machine": machine(), "rows": rows + refusals})
    return 0


def cmd_profile(args) -> int:
    """cProfile one case's rewrite in this process and print the top functions by cumulative time."""
    import cProfile
    import pstats

    import graphpass

    case = CASES[args.case]
    rewrite = graphpass.rewrite_to_buffer  # imports TensorFlow, outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        rewrite(ROOT / case.graph, **_options(case))
    except graphpass.GraphpassError:
        if not case.refused:
            raise
    finally:
        profiler.disable()
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


# ---------------------------------------------------------------- gradient exchange


ALGORITHMS = ("collective", "ring", "hierarchical", "naive")
PACKINGS = {
    "none": "",
    "num_split=8": "  - pack-gradients: {num_split: 8}\n",
    "bucket=25MiB": f"  - pack-gradients: {{bucket_bytes: {25 * MIB}}}\n",
}
REDUCE_OPS = ("CollectiveReduceV2", "NcclAllReduce", "AddN", "AddV2", "Add")


def exchange_rules(algorithm: str, packing: str) -> str:
    return f"passes:\n  - replicate\n{PACKINGS[packing]}  - allreduce: {{algorithm: {algorithm}}}\n"


def trainable_shapes(model: str) -> list[tuple[str, list[int]]]:
    sidecar = BENCH / f"{model}.json"
    if not sidecar.exists():
        raise SystemExit(f"{sidecar} is missing: run python tools/make_big_fixtures.py {model}")
    return [(name, shape) for name, shape in json.loads(sidecar.read_text())["trainable"]]


def gradient_graph(shapes: list[tuple[str, list[int]]]):
    """A training graph whose variables have `shapes` and whose loss is cheap: sum(w * scale).

    `scale` is a non-trainable variable rather than a placeholder because graphpass (at 7c6a65d)
    clones a scalar placeholder per tower, so feeding it by its name fails (see BENCHMARKS.md).

    Returns the GraphDef and, per variable name, the tensor name of its raw gradient.
    """
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        scale = tf1.get_variable("scale", [], trainable=False, initializer=tf1.ones_initializer())
        variables = []
        for name, shape in shapes:
            scope, _, leaf = name.rpartition("/")
            with tf1.variable_scope(scope or None, default_name="v"):
                variables.append(tf1.get_variable(leaf, shape, initializer=tf1.zeros_initializer()))
        loss = tf.add_n([tf.reduce_sum(v * scale) for v in variables], name="loss")
        opt = tf1.train.GradientDescentOptimizer(0.1)
        grads = opt.compute_gradients(loss, variables)
        opt.apply_gradients(grads, name="train")
        tf1.global_variables_initializer()
    raw = {v.op.name: g.name for g, v in grads}
    return graph.as_graph_def(), raw


def count_reduce_ops(graph_def) -> tuple[int, int]:
    """(CollectiveReduceV2 nodes, all summing nodes the all-reduce emitted) in `graph_def`."""
    collective = sum(1 for n in graph_def.node if n.op == "CollectiveReduceV2")
    sums = sum(1 for n in graph_def.node if n.op in REDUCE_OPS and "allreduce/" in n.name)
    return collective, sums


def _median_step(session, target, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        session.run(target)
    times = []
    for _ in range(steps):
        _, seconds = _timed(session.run, target)
        times.append(seconds)
    return statistics.median(times)


def _probe(graph, tensor_names: list[str]):
    """One small tensor that needs every tensor in `tensor_names`: their first elements, stacked.

    Fetching a value (not running a group of ops) matters: Grappler turns stateless ops whose
    outputs only feed control edges into NoOps, which would skip the very work being timed.
    """
    import tensorflow as tf

    firsts = []
    for name in tensor_names:
        tensor = graph.get_tensor_by_name(name)
        with tf.device(tensor.device):
            firsts.append(tf.reshape(tensor, [-1])[0])
    return tf.stack(firsts)


def time_exchange(rewritten, raw: dict[str, str], k: int, warmup: int, steps: int):
    """Median seconds of (producing every tower's raw gradients, producing every reduced gradient),
    and whether the reduced gradients came out right (every gradient is 1.0 on every tower)."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf1.import_graph_def(rewritten, name="")
        produce = _probe(graph, [f"tower{i}/{t}" for t in raw.values() for i in range(k)])
        reduced = _probe(graph, [f"tower{i}/reduced_grads/{v}:0" for v in raw for i in range(k)])
        config = tf1.ConfigProto(device_count={"CPU": k}, allow_soft_placement=False)
        with tf1.Session(graph=graph, config=config) as session:
            session.run(graph.get_operation_by_name("init"))
            grads_s = _median_step(session, produce, warmup, steps)
            step_s = _median_step(session, reduced, warmup, steps)
            correct = bool((abs(session.run(reduced) - 1.0) < 1e-6).all())
    return grads_s, step_s, correct


def measure_exchange(graph_def, raw, k: int, algorithm: str, packing: str, warmup: int, steps: int) -> dict:
    import graphpass
    from graphpass.pipeline import Pipeline

    row = {"devices": k, "algorithm": algorithm, "packing": packing}
    try:
        pipeline = Pipeline.from_yaml(exchange_rules(algorithm, packing), source=f"{algorithm}/{packing}")
        rewritten, report = graphpass.rewrite_with_report(
            graph_def, devices=k, rules=pipeline, device_type="CPU"
        )
    except Exception as e:
        return {**row, "error": f"{type(e).__name__}: {e}"}
    collective, sums = count_reduce_ops(rewritten)
    grads_s, step_s, correct = time_exchange(rewritten, raw, k, warmup, steps)
    return {
        **row,
        "reductions": report.reductions,
        "collective_ops": collective,
        "reduce_ops": sums,
        "grads_ms": 1e3 * grads_s,
        "step_ms": 1e3 * step_s,
        "exchange_ms": 1e3 * (step_s - grads_s),
        "correct": correct,
    }


EXCHANGE_COLUMNS = [
    ("K", "{}", "devices"),
    ("algorithm", "{}", "algorithm"),
    ("packing", "{}", "packing"),
    ("reductions", "{}", "reductions"),
    ("CollectiveReduceV2", "{}", "collective_ops"),
    ("reduce ops", "{}", "reduce_ops"),
    ("grads only ms", "{:.0f}", "grads_ms"),
    ("grads+all-reduce ms", "{:.0f}", "step_ms"),
    ("all-reduce ms", "{:.0f}", "exchange_ms"),
    ("values ok", "{}", "correct"),
]


def exchange_table(rows: list[dict]) -> str:
    for row in rows:
        row.setdefault("case", f"K={row['devices']} {row['algorithm']} {row['packing']}")
    return table(rows, EXCHANGE_COLUMNS)


def cmd_exchange(args) -> int:
    shapes = trainable_shapes(args.model)
    graph_def, raw = gradient_graph(shapes)
    total = sum(_num_elements(s) for _, s in shapes)
    summary = f"{len(shapes)} gradients, {total:,} float32 ({4 * total / MIB:.1f} MiB)"
    print(f"{args.model}: {summary}", file=sys.stderr)
    rows = []
    for k in (int(x) for x in args.devices.split(",")):
        for algorithm in args.algorithms.split(","):
            for packing in PACKINGS:
                print(f"... K={k} {algorithm} {packing}", file=sys.stderr, flush=True)
                rows.append(measure_exchange(graph_def, raw, k, algorithm, packing, args.warmup, args.steps))
    print(exchange_table(rows))
    _write_json(args.json, {"kind": "exchange", "model": args.model, "machine": machine(), "rows": rows})
    return 0


def _num_elements(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------- common


def machine() -> dict:
    """The CPU, core count, memory, Python and TensorFlow versions of this machine."""
    import platform

    import tensorflow as tf

    mem_kib = _proc_field("/proc/meminfo", "MemTotal") or "0 kB"
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_kib.split()[0]) / MIB, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def _proc_field(path: str, key: str) -> str | None:
    """The value of the first `key: value` line of a /proc file, or None."""
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {path}", file=sys.stderr)


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{rewrite,profile,exchange}")
    rewrite = sub.add_parser("rewrite", help="rewrite time and peak RSS per case (the default)")
    for p in (parser, rewrite):
        p.add_argument("--cases", help=f"comma-separated, from: {', '.join(CASES)}")
        p.add_argument("--repeat", type=int, default=3, help="rewrites per case; the best time counts")
        p.add_argument("--timeout", type=float, default=3600, help="seconds per case")
        p.add_argument("--json", help="also write the results to this file")
    profile = sub.add_parser("profile", help="cProfile one case's rewrite")
    profile.add_argument("case", choices=list(CASES))
    profile.add_argument("--top", type=int, default=30)
    profile.add_argument("--sort", default="cumulative")
    exchange = sub.add_parser("exchange", help="all-reduce step time on K virtual CPU devices")
    exchange.add_argument("--model", default="resnet50", help="use build/bench/MODEL.json's shapes")
    exchange.add_argument("--devices", default="4", help="comma-separated tower counts")
    exchange.add_argument("--algorithms", default=",".join(ALGORITHMS))
    exchange.add_argument("--warmup", type=int, default=2)
    exchange.add_argument("--steps", type=int, default=10)
    exchange.add_argument("--json", help="also write the results to this file")
    work = sub.add_parser("_worker")  # one case in this process, for cmd_rewrite; not listed in --help
    work.add_argument("case", choices=list(CASES))
    work.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))  # measure the graphpass of this checkout
    args = parse_args(argv)
    if args.command == "_worker":
        return worker(args.case, args.repeat)
    if args.command == "profile":
        return cmd_profile(args)
    if args.command == "exchange":
        return cmd_exchange(args)
    return cmd_rewrite(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
