"""The graphpass command: argument parsing and printing only; the work is in graphpass.api."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ConfigError, GraphpassError

# TensorFlow's C++ errors (a failed cuInit on machines without a GPU, say) are not graphpass's
# messages; the command line reports problems itself, one line each.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROG = "graphpass"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Rewrite single-tower TF1 training graphs for K devices.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("rewrite", help="replicate a training graph across devices")
    r.add_argument("input", help="single-tower training GraphDef (.pb, .pbtxt or .meta)")
    r.add_argument("-o", "--output", help="where to write the result (default: INPUT.rewritten.pb)")
    r.add_argument(
        "--devices",
        required=True,
        help="tower count (8 = devices 0..7) or a comma-separated list of device names",
    )
    r.add_argument(
        "--device-type",
        default="GPU",
        type=str.upper,
        choices=["GPU", "CPU"],
        help="device type for a count (default GPU)",
    )
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="with a count: that many devices on each of W workers (/job:worker/task:t)",
    )
    r.add_argument(
        "--cluster",
        metavar="FILE",
        help='cluster spec JSON {"worker": [...], "ps": [...]}: --devices per worker, ps tasks as '
        "parameter servers",
    )
    r.add_argument("--rules", default=None, help="preset name or YAML file (default replicated-nccl)")
    r.add_argument("--verify-each", action="store_true", help="check the graph after every pass")
    r.add_argument(
        "--tensorboard", metavar="LOGDIR", help="also write the result for TensorBoard's graph view"
    )
    r.add_argument("-q", "--quiet", action="store_true", help="print nothing on success (and no progress)")

    i = sub.add_parser("inspect", help="what graphpass sees in a single-tower or rewritten graph")
    i.add_argument("input", help="GraphDef (.pb, .pbtxt or .meta)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")

    f = sub.add_parser("verify", help="run a rewrite and its original on CPU devices and compare")
    f.add_argument("original", help="the single-tower GraphDef")
    f.add_argument("rewritten", help="its rewrite")
    f.add_argument("--steps", type=int, default=3, help="train steps to compare (default 3)")
    f.add_argument("--batch", type=int, default=None, help="global batch (default 4 per tower)")
    f.add_argument("--rtol", type=float, default=1e-5, help="largest relative difference allowed")
    f.add_argument("--int-max", type=int, default=2, help="integer inputs are drawn from [0, N)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--timeout", type=float, default=300.0, help="seconds a step may take (default 300)")
    f.add_argument(
        "--runs", type=int, default=3, help="also run the rewrite this many times from one state (a race)"
    )
    f.add_argument("--json", action="store_true", help="print the result as JSON")

    sub.add_parser("rules", help="list the shipped presets and the passes with their options")

    d = sub.add_parser("diff", help="show how two graphs differ (exit 0 identical, 1 different)")
    d.add_argument("a", help="first GraphDef (.pb, .pbtxt or .meta)")
    d.add_argument("b", help="second GraphDef")
    d.add_argument("--expand", action="store_true", help="list every node instead of one line per scope")
    d.add_argument("--max-lines", type=int, default=None, metavar="N", help="print at most N lines")

    v = sub.add_parser("dot", help="write a collapsed Graphviz view (towers, variables, all-reduce)")
    v.add_argument("input", help="GraphDef, rewritten or single-tower (.pb, .pbtxt or .meta)")
    v.add_argument("-o", "--output", help="OUT.dot, OUT.svg or OUT (default: INPUT.dot); .svg needs graphviz")
    v.add_argument(
        "--max-allreduce-groups",
        type=int,
        default=12,
        metavar="N",
        help="one box per all-reduce key up to N keys, else one box",
    )
    return p


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"with --cluster, --devices is a count per worker (got '{text}')")
    return int(text)


def _default_output(path: Path) -> Path:
    suffix = path.suffix if path.suffix in (".pb", ".pbtxt") else ".pb"
    return path.with_name(f"{path.stem}.rewritten{suffix}")


def _check_output(inp: Path, out: Path):
    if out.exists() and inp.exists() and out.resolve() == inp.resolve():
        raise ConfigError(f"output {out} is the input file; choose another -o")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"output directory {parent} does not exist")
    if out.is_dir():
        raise ConfigError(f"output {out} is a directory")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr muted: its C++ start-up logs bypass TF_CPP_MIN_LOG_LEVEL and
    would bury graphpass's one-line messages."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # deprecation notices are for TensorFlow's users, not ours
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cmd_rewrite(args) -> int:
    from .api import rewrite_to_buffer
    from .io import save_graph

    inp = Path(args.input)
    out = Path(args.output) if args.output else _default_output(inp)
    _check_output(inp, out)
    from .progress import Progress

    devices, workers, ps = args.devices, args.workers, []
    if args.cluster:
        from .devices import cluster_devices, load_cluster

        if workers is not None:
            raise ConfigError("give --cluster or --workers, not both")
        devices, ps = cluster_devices(load_cluster(args.cluster), _count(args.devices), args.device_type)
    data, report = rewrite_to_buffer(
        inp,
        devices,
        args.rules or "replicated-nccl",
        args.device_type,
        args.verify_each,
        Progress.for_terminal(args.quiet),
        workers=workers,
        ps_devices=ps,
    )
    save_graph(data, out)
    if args.tensorboard:
        from .io import GraphDef, write_tensorboard

        write_tensorboard(GraphDef.FromString(data), args.tensorboard)
    if not args.quiet:
        _print_summary(inp, out, report)
    return 0


def _device_range(devices: list[str]) -> str:
    if len(devices) > 2:
        prefix = devices[0].rsplit(":", 1)[0]
        if all(d == f"{prefix}:{i}" for i, d in enumerate(devices)):
            return f"{prefix}:0..{len(devices) - 1}"
    return ", ".join(devices)


def _print_summary(inp: Path, out: Path, r) -> None:
    lines = [
        f"{PROG}: {inp} -> {out}",
        f"  towers           {r.towers} on {_device_range(r.devices)} ({r.mode}, rules {r.rules})",
        f"  variables        {r.variables} ({r.trainable} trainable; "
        + (
            f"{r.replicated_variables} with a replica per tower)"
            if r.mode == "replicated"
            else "one copy each)"
        ),
    ]
    for run in r.passes:
        lines.append(f"  {run.pass_.name:<16} {run.result.summary} ({run.seconds * 1000:.0f} ms)")
    lines.append(f"  nodes            {r.nodes_in} -> {r.nodes_out}")
    lines.append(f"  time             {r.seconds:.2f} s")
    for note in r.notes:
        lines.append(f"  note             {note}")
    print("\n".join(lines))


def _cmd_rules(args) -> int:
    from .passes import REGISTRY
    from .pipeline import preset_description, preset_names

    print("presets (--rules NAME):")
    for name in preset_names():
        print(f"  {name:<24} {preset_description(name)}")
    print("\npasses (in a rules file: passes: [- NAME: {OPTION: VALUE}]):")
    for name, cls in REGISTRY.items():
        print(f"  {name:<24} {cls.summary}")
        for opt in cls.options():
            print(f"    {opt.name}: {opt.type_name()} = {opt.default!r}")
            if opt.help:
                print(f"        {opt.help}")
    return 0


def _cmd_diff(args) -> int:
    from .diff import diff_files

    d = diff_files(args.a, args.b)
    print(d.render(max_lines=args.max_lines, expand=args.expand))
    return 0 if d.identical else 1


def _cmd_dot(args) -> int:
    from .dot import render, to_dot
    from .io import load_graph

    inp = Path(args.input)
    out = Path(args.output) if args.output else inp.with_suffix(".dot")
    text = to_dot(load_graph(inp), title=inp.name, max_allreduce_groups=args.max_allreduce_groups)
    done = render(text, out)
    print(f"{PROG}: wrote {done.dot}" + (f" and {done.svg}" if done.svg else ""))
    if done.note:
        print(f"  note       {done.note}")
    return 0


def _cmd_inspect(args) -> int:
    import json

    from .inspect import inspect_graph, render
    from .io import load_graph

    report = inspect_graph(load_graph(args.input))
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0


def _cmd_verify(args) -> int:
    import json

    from .execution import verify_rewrite
    from .io import load_graph

    if args.steps < 1 or args.runs < 1 or (args.batch is not None and args.batch < 1):
        raise ConfigError("--steps, --runs and --batch must be at least 1")
    v = verify_rewrite(
        load_graph(args.original),
        load_graph(args.rewritten),
        args.steps,
        args.batch,
        args.seed,
        args.int_max,
        args.timeout,
        args.runs,
    )
    ok = v.ok(args.rtol)
    c = v.comparison
    if args.json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "towers": v.towers,
                    "executed": v.executed,
                    "reason": v.reason,
                    "problems": v.problems,
                    "steps": c.steps if c else 0,
                    "max_rel_diff": c.max_rel_diff if c else {},
                    "replica_mismatch": c.replica_mismatch if c else {},
                    "initial_mismatch": c.initial_mismatch if c else {},
                    "missing": c.missing if c else [],
                    "runs": v.runs,
                    "varying_between_runs": v.varying,
                    "replicas_drifting": v.drifting,
                },
                indent=2,
            )
        )
        return 0 if ok else 1
    for p in v.problems:
        print(f"problem: {p}")
    if c is not None:
        rows = sorted(c.max_rel_diff.items(), key=lambda kv: -kv[1])
        print(f"{v.towers} towers on CPU, {c.steps} steps; largest relative difference per variable:")
        for name, d in rows[:15]:
            print(f"  {d:10.2e}  {name}{'   <-- above ' + format(args.rtol, 'g') if d > args.rtol else ''}")
        if len(rows) > 15:
            print(f"  ... {len(rows) - 15} more, all below {rows[15][1]:.2e}")
        replicas = (
            "replicas equal their canonical variables"
            if not c.replica_mismatch
            else (f"{len(c.replica_mismatch)} replicas differ, e.g. {next(iter(c.replica_mismatch))}")
        )
        print(f"  {replicas}")
        for name in c.initial_mismatch:
            print(f"  init differs: {name}")
        for name in c.missing:
            print(f"  missing from the rewrite: {name}")
        if v.runs:
            if v.varying or v.drifting:
                worst = sorted({**v.varying, **v.drifting}.items(), key=lambda kv: -kv[1])[:3]
                shown = ", ".join(f"{n} ({d:.2e})" for n, d in worst)
                print(f"  {v.runs} runs from one state differ (a race in the rewritten step): {shown}")
            else:
                print(f"  {v.runs} runs from one state give identical results")
    elif v.reason:
        print(v.reason)
    print(f"{PROG}: verify {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


COMMANDS = {
    "rewrite": _cmd_rewrite,
    "rules": _cmd_rules,
    "inspect": _cmd_inspect,
    "verify": _cmd_verify,
    "diff": _cmd_diff,
    "dot": _cmd_dot,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"{PROG}: error: {e} (see '{PROG} --help')", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    _import_tensorflow_quietly()
    try:
        return COMMANDS[args.command](args)
    except GraphpassError as e:
        kind = "internal error (a bug in graphpass)" if e.exit_code == 1 else "error"
        print(f"{PROG}: {kind}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if os.environ.get("GRAPHPASS_DEBUG"):
            raise
        print(
            f"{PROG}: internal error (a bug in graphpass): {type(e).__name__}: {e} "
            "(set GRAPHPASS_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
