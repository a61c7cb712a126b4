"""The graphpass command: arguments, paths and exit codes; the reports are in progress.py, the
signals' unwinding in signals.py."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError, GraphpassError, shorten
from .signals import Signalled, signals_unwind

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
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("rewrite", help="replicate a training graph across devices")
    r.add_argument("input", help="single-tower training GraphDef (.pb, .pbtxt or .meta)")
    r.add_argument(
        "-o", "--output", help="where to write the result (default: INPUT.rewritten.pb; - is stdout)"
    )
    r.add_argument(
        "--format", choices=["pb", "pbtxt"], help="binary or text output (default: from -o's suffix)"
    )
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
    r.add_argument(
        "--split",
        action="extend",
        type=_comma_list,
        default=[],
        metavar="INPUT[,INPUT...]",
        help="inputs that are the batch, split across the towers (default: decided from the graph's shapes)",
    )
    r.add_argument(
        "--broadcast",
        action="extend",
        type=_comma_list,
        default=[],
        metavar="INPUT[,INPUT...]",
        help="inputs every tower reads whole (default: decided from the graph's shapes)",
    )
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

    rl = sub.add_parser("rules", help="list the shipped presets and the passes, or print a preset's YAML")
    rl.add_argument("name", nargs="?", help="a preset: print its rules file (a start for your own)")

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


def _comma_list(text: str) -> list[str]:
    """A comma-separated list of input names (the option may also be repeated)."""
    return [n for n in text.split(",") if n]


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"with --cluster, --devices is a count per worker (got '{shorten(text)}')")
    return int(text)


def _default_output(path: Path, text: bool | None) -> Path:
    if text is None:
        suffix = path.suffix if path.suffix in (".pb", ".pbtxt") else ".pb"
    else:
        suffix = ".pbtxt" if text else ".pb"
    return path.with_name(f"{path.stem}.rewritten{suffix}")


def _output(args):
    """Where the rewrite goes (checked before any work): -o, or the default name; '-' is stdout, in
    the input's format unless --format says."""
    from .io import is_text, resolve_output

    inp = Path(args.input)
    text = None if args.format is None else args.format == "pbtxt"
    path = args.output if args.output is not None else _default_output(inp, text)
    if str(path) == "-" and text is None:
        text = is_text(inp)
    return resolve_output(path, text, inputs=[inp], allow_stdout=True)


def _check_paths(args) -> None:
    """Refuse input and output paths that cannot work before TensorFlow's import (seconds) is paid."""
    from .io import check_graph_path

    for name in ("input", "original", "rewritten", "a", "b"):
        if getattr(args, name, None) is not None:
            check_graph_path(getattr(args, name))
    if args.command == "rewrite":
        args.out = _output(args)
        if args.tensorboard and os.path.lexists(args.tensorboard) and not os.path.isdir(args.tensorboard):
            raise ConfigError(f"--tensorboard {args.tensorboard} is not a directory")


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
    except ImportError as e:
        raise ConfigError(f"cannot import TensorFlow ({shorten(e, 200)}); pip install tensorflow") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cmd_rewrite(args) -> int:
    from .api import rewrite_to_buffer
    from .io import Staged
    from .progress import Progress, print_summary

    devices, workers, ps = args.devices, args.workers, []
    if args.cluster:
        from .devices import cluster_devices, load_cluster

        if workers is not None:
            raise ConfigError("give --cluster or --workers, not both")
        devices, ps = cluster_devices(load_cluster(args.cluster), _count(args.devices), args.device_type)
    data, report = rewrite_to_buffer(
        args.input,
        devices,
        args.rules or "replicated-nccl",
        args.device_type,
        args.verify_each,
        Progress.for_terminal(args.quiet),
        workers=workers,
        ps_devices=ps,
        split=args.split,
        broadcast=args.broadcast,
    )
    # The output is renamed into place last: a failure before (TensorBoard's file, the summary, a
    # signal) leaves no output file and no temporary behind.
    with Staged() as staged:
        events = staged.add_tensorboard(args.tensorboard, data) if args.tensorboard else None
        staged.add_graph(args.out, data)
        del data
        if not args.quiet:
            stream = sys.stdout if args.out.path is not None else sys.stderr  # stdout holds the graph
            print_summary(args.input, args.out.shown, report, events, stream)
        staged.commit()
    return 0


def _cmd_rules(args) -> int:
    from .passes import REGISTRY
    from .pipeline import preset_description, preset_names, presets_dir

    if args.name is not None:
        if args.name not in preset_names():
            raise ConfigError(f"unknown preset '{shorten(args.name)}'; presets: {', '.join(preset_names())}")
        sys.stdout.write((presets_dir() / f"{args.name}.yaml").read_text())
        return 0
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
    from .progress import print_verify

    ok = v.ok(args.rtol)
    print_verify(v, ok, args.rtol, args.json)
    return 0 if ok else 1


COMMANDS = {
    "rewrite": _cmd_rewrite,
    "rules": _cmd_rules,
    "inspect": _cmd_inspect,
    "verify": _cmd_verify,
    "diff": _cmd_diff,
    "dot": _cmd_dot,
}


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr closed: nothing to tell
        print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status: 0, 1 (a bug in graphpass, or verify/diff found a
    difference), 2 (bad input or a refusing system), 141 (stdout's reader went away), 128 + N (signal N)."""
    with signals_unwind():
        try:
            return _main(argv)
        except KeyboardInterrupt:
            _say(f"{PROG}: interrupted")
            return 130
        except Signalled as e:
            _say(f"{PROG}: terminated by {signal.Signals(e.signum).name}")
            return 128 + e.signum


def _run(argv: list[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        raise ConfigError(f"{e} (see '{PROG} --help')") from None
    except SystemExit as e:  # --help and --version print and exit here
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        parser.print_help()
        return 2
    _check_paths(args)
    _import_tensorflow_quietly()
    return COMMANDS[args.command](args)


def _main(argv: list[str] | None) -> int:
    from .io import abandon_stdout

    try:
        code = _run(argv)
        if sys.stdout is not None:
            sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except GraphpassError as e:
        kind = "internal error (a bug in graphpass)" if e.exit_code == 1 else "error"
        _say(f"{PROG}: {kind}: {e}")
        return e.exit_code
    except BrokenPipeError:  # stdout's reader has gone (graphpass inspect big.pb | head -1): quietly
        abandon_stdout()
        return 141
    except OSError as e:  # the system refused something: the user's to fix, not a bug
        where = f"{shorten(e.filename, 200)}: " if e.filename else ""
        _say(f"{PROG}: error: {where}{e.strerror or shorten(e, 200)}")
        return 2
    except MemoryError:
        _say(f"{PROG}: error: out of memory")
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if os.environ.get("GRAPHPASS_DEBUG"):
            raise
        _say(
            f"{PROG}: internal error (a bug in graphpass): {type(e).__name__}: {shorten(e, 1000)} "
            "(set GRAPHPASS_DEBUG=1 for a traceback)"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
