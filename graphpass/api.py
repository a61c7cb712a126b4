"""The rewrite entry point: load -> analyse -> pipeline of passes -> verify -> GraphDef."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tensorflow.core.framework import graph_pb2

from . import analysis, manifest
from . import devices as devmod
from .batch_inputs import BatchInputs
from .context import RewriteContext
from .errors import ConfigError, InvalidGraphError
from .io import MAX_GRAPH_BYTES, read_graph
from .ir import verify
from .ir.graph import Graph
from .ir.rewriter import Rewriter
from .pipeline import DEFAULT_RULES, PassRun, Pipeline
from .progress import SILENT, Progress
from .shapes import ShapeOracle

GraphDef = graph_pb2.GraphDef


@dataclass
class Report:
    """What a rewrite did, for the CLI summary and for pipelines that log it."""

    devices: list[str]
    rules: str
    mode: str | None
    nodes_in: int
    nodes_out: int
    variables: int
    trainable: int
    replicated_variables: int
    reductions: int
    passes: list[PassRun] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    inputs: BatchInputs = field(default_factory=BatchInputs)  # which inputs were split, and why

    @property
    def towers(self) -> int:
        return len(self.devices)


def rewrite(
    graph: GraphDef | str | os.PathLike,
    devices: int | str | Sequence[str] = 8,
    rules: str | os.PathLike | Pipeline = DEFAULT_RULES,
    device_type: str = "GPU",
    verify_each: bool = False,
    workers: int | None = None,
    ps_devices: Sequence[str] = (),
    split: Sequence[str] = (),
    broadcast: Sequence[str] = (),
) -> GraphDef:
    """Rewrite a single-tower training graph into a data-parallel graph over `devices`.

    Args:
        graph: a GraphDef, or the path of a .pb/.pbtxt/.meta file.
        devices: a tower count (devices 0..N-1 of `device_type`) or a list of device names.
        rules: a preset name from rules/, a YAML path, or a Pipeline.
        device_type: GPU or CPU, used when `devices` is a count.
        verify_each: check the graph's structure after every pass.
        workers: with a count, `devices` devices on each of this many workers
            (/job:worker/task:{t}/device:{type}:{d}).
        ps_devices: parameter-server devices (/job:ps/task:N/device:CPU:0) that parameter_server
            rules place variables on by default.
        split, broadcast: inputs to split across the towers, or to give whole to each, where the
            graph's shapes do not decide it (as the replicate pass's options of those names).
    Returns:
        The rewritten GraphDef; the input is not modified.
    Raises:
        GraphpassError: InvalidGraphError, ConfigError or PassFailedError for bad input.
    """
    return rewrite_with_report(
        graph,
        devices,
        rules,
        device_type,
        verify_each,
        workers=workers,
        ps_devices=ps_devices,
        split=split,
        broadcast=broadcast,
    )[0]


@contextlib.contextmanager
def _collector_paused():
    """The rewrite allocates millions of short-lived, acyclic objects while big tables stay alive;
    Python's cycle collector would walk those tables again and again (a fifth of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def rewrite_with_report(
    graph: GraphDef | str | os.PathLike,
    devices: int | str | Sequence[str] = 8,
    rules: str | os.PathLike | Pipeline = DEFAULT_RULES,
    device_type: str = "GPU",
    verify_each: bool = False,
    progress: Progress = SILENT,
    workers: int | None = None,
    ps_devices: Sequence[str] = (),
    split: Sequence[str] = (),
    broadcast: Sequence[str] = (),
) -> tuple[GraphDef, Report]:
    """Like rewrite(), also returning a Report of what was done; `progress` shows it on a terminal."""
    data, report = rewrite_to_buffer(
        graph, devices, rules, device_type, verify_each, progress, workers, ps_devices, split, broadcast
    )
    return GraphDef.FromString(data), report


def rewrite_to_bytes(
    graph: GraphDef | str | os.PathLike,
    devices: int | str | Sequence[str] = 8,
    rules: str | os.PathLike | Pipeline = DEFAULT_RULES,
    device_type: str = "GPU",
    verify_each: bool = False,
    progress: Progress = SILENT,
    workers: int | None = None,
    ps_devices: Sequence[str] = (),
    split: Sequence[str] = (),
    broadcast: Sequence[str] = (),
) -> tuple[bytes, Report]:
    """Like rewrite_to_buffer(), the output as immutable bytes (one more copy of it)."""
    data, report = rewrite_to_buffer(
        graph, devices, rules, device_type, verify_each, progress, workers, ps_devices, split, broadcast
    )
    return bytes(data), report


def rewrite_to_buffer(
    graph: GraphDef | str | os.PathLike,
    devices: int | str | Sequence[str] = 8,
    rules: str | os.PathLike | Pipeline = DEFAULT_RULES,
    device_type: str = "GPU",
    verify_each: bool = False,
    progress: Progress = SILENT,
    workers: int | None = None,
    ps_devices: Sequence[str] = (),
    split: Sequence[str] = (),
    broadcast: Sequence[str] = (),
) -> tuple[bytearray, Report]:
    """Like rewrite_with_report(), with the GraphDef serialized (deterministically) into a
    bytearray: what the CLI writes. The cheapest call for big graphs: the towers are copied as
    bytes, never parsed, straight into the output, and no further copy of it is made."""
    with _collector_paused():
        return _rewrite(
            graph, devices, rules, device_type, verify_each, progress, workers, ps_devices, split, broadcast
        )


def _read(path) -> tuple[Graph, bytes | None]:
    """The graph at `path` and the file's bytes (see read_graph). No variable of _rewrite's holds
    the GraphDef, so it is freed when the graph lets go of it (Graph.finish)."""
    graph_def, data = read_graph(path)
    return Graph(graph_def, copy=False), data


def _refuse_rewritten(g: Graph) -> None:
    """Refuse a graph graphpass has already rewritten (it holds a manifest), before any analysis."""
    node = manifest.find(g.parsed_nodes())
    if node is not None:
        raise InvalidGraphError(
            f"the graph was already rewritten by graphpass (node '{node.name}' records its "
            "towers): rewrite the single-tower graph instead"
        )


def _names(value, what: str) -> tuple[str, ...]:
    """Input names given as one string or a sequence of strings."""
    try:
        items = () if value is None else (value,) if isinstance(value, str) else tuple(value)
    except TypeError:
        items = (value,)
    if not all(isinstance(n, str) for n in items):
        raise ConfigError(f"{what} takes input names (strings)")
    return items


def _rewrite(
    graph, devices, rules, device_type, verify_each, progress, workers, ps_devices, split, broadcast
):
    """The rewrite, its output in a bytearray (see Graph.finish), and its Report."""
    start = time.perf_counter()
    pipeline = rules if isinstance(rules, Pipeline) else Pipeline.load(rules)
    towers = devmod.parse_devices(devices, device_type, workers)
    ps = [devmod.canonical(d) for d in ps_devices]
    if isinstance(graph, GraphDef):
        g, data = Graph(graph, copy=True), None
    elif isinstance(graph, (str, os.PathLike)):
        g, data = _read(graph)
    else:
        raise InvalidGraphError(f"expected a GraphDef or a path, got {type(graph).__name__}")
    nodes_in = len(g)
    _refuse_rewritten(g)
    lookalike = manifest.lookalikes(g.names())
    if data is None:
        data = g.source_bytes()
    shapes = ShapeOracle(data, g.names(), g.versions, g.library)
    del data  # from here on, the graph and the oracle hold what the output will not need
    info = analysis.analyze(g, describe=False)
    ctx = RewriteContext(
        g,
        Rewriter(g),
        towers,
        info,
        shapes,
        progress=progress,
        ps_devices=ps,
        split_inputs=_names(split, "split"),
        broadcast_inputs=_names(broadcast, "broadcast"),
    )
    ctx.notes.extend(info.backward.notes)
    if not info.backward.scopes:
        ctx.notes.append(
            "no backward pass found by its names (no tf.gradients or GradientTape scope): the "
            "gradients are reduced where the updates read them"
        )
    runs = pipeline.run(ctx, verify_each=verify_each)
    if ctx.mode is not None:
        manifest.record(ctx, lookalike)
    verify.check(g, packs=ctx.packs)
    shapes.close()
    nodes_out = len(g)
    data = g.finish()
    if len(data) > MAX_GRAPH_BYTES:
        raise InvalidGraphError(
            f"the rewritten graph has {len(data)} bytes, over protobuf's 2 GiB limit for a GraphDef"
        )
    report = Report(
        devices=towers,
        rules=pipeline.source,
        mode=ctx.mode,
        nodes_in=nodes_in,
        nodes_out=nodes_out,
        variables=len(info.variables),
        trainable=len(info.trainable),
        replicated_variables=len(ctx.replicas),
        reductions=len(ctx.reduced),
        passes=runs,
        seconds=time.perf_counter() - start,
        notes=list(ctx.notes),
        inputs=ctx.batch,
    )
    return data, report
