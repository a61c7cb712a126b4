"""What passes hand each other: the devices, the analysis, and the gradient reductions still to build."""

from __future__ import annotations

from dataclasses import dataclass, field

from .analysis import TrainingGraph
from .batch_inputs import BatchInputs
from .ir.graph import Graph
from .ir.rewriter import Rewriter
from .progress import SILENT, Progress
from .shapes import ShapeOracle


@dataclass
class Reduction:
    """K per-tower tensors to be summed (or averaged) into `outputs`.

    `outputs` are Identity nodes that consumers already read: one per tower for an all-reduce,
    a single one for parameter-server aggregation. A pass that builds the reduction points
    each output at its result. Sparse gradients are two reductions, values and indices, whose
    results are the towers' tensors concatenated (values scaled by 1/K when averaging).
    """

    key: str
    inputs: list[str]
    outputs: list[str]
    dtype: int
    shape: list[int | None] | None
    variables: list[str]
    kind: str = "dense"  # dense (summed), or a sparse gradient's values / indices (gathered)

    @property
    def all_reduce(self) -> bool:
        return len(self.outputs) == len(self.inputs)

    @property
    def num_elements(self) -> int | None:
        if self.shape is None or any(d is None or d < 0 for d in self.shape):
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Pack:
    """One group of gradients that pack-gradients concatenated (one dtype, and in parameter-server
    mode one destination device), as it built it: what went in, what it became, and the nodes
    that cut and restore it. The allreduce pass and the structural verifier read packs from here,
    never from node names.

    Per tower (the pack side) and per output of the pieces' reductions (the unpack side) there is
    a concatenation and a split; either is "" where there was nothing to join or cut (one
    gradient, one piece).
    """

    index: int  # the group's number: its nodes are under naming.pack_scope(index)
    gradients: tuple[str, ...]  # keys of the reductions packed, in pack order
    sizes: tuple[int, ...]  # elements of each gradient
    pieces: tuple[str, ...]  # keys of the reductions the pack was cut into
    piece_sizes: tuple[int, ...]  # elements of each piece
    concats: tuple[str, ...]  # per tower: ConcatV2 of the flattened gradients
    splits: tuple[str, ...]  # per tower: SplitV of that into the pieces
    unpack_concats: tuple[str, ...]  # per output: ConcatV2 of the reduced pieces
    unpack_splits: tuple[str, ...]  # per output: SplitV of that back into the gradients
    reshapes: tuple[tuple[str, ...], ...]  # per output, per gradient: the Reshape to its shape

    @property
    def label(self) -> str:
        """How messages name the pack: `pack{index}`."""
        return f"pack{self.index}"


@dataclass
class RewriteContext:
    """Shared state of one pipeline run over one graph."""

    graph: Graph
    rewriter: Rewriter
    devices: list[str]
    analysis: TrainingGraph
    shapes: ShapeOracle
    mode: str | None = None
    variable_devices: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, list[str]] = field(default_factory=dict)
    pending: list[Reduction] = field(default_factory=list)
    reduced: list[tuple[Reduction, str]] = field(default_factory=list)
    packs: list[Pack] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    progress: Progress = SILENT
    ps_devices: list[str] = field(default_factory=list)
    # Inputs the caller says are (not) the batch (API/CLI), and the decision replicate makes.
    split_inputs: tuple[str, ...] = ()
    broadcast_inputs: tuple[str, ...] = ()
    batch: BatchInputs = field(default_factory=BatchInputs)

    @property
    def num_towers(self) -> int:
        return len(self.devices)
