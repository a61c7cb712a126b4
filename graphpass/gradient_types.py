"""The backward-pass summary types (backward pass, update, raw gradient) and autodiff's name marks."""

from __future__ import annotations

from dataclasses import dataclass, field

from .gradient_dataflow import OutputTypes

# How autodiff names what it makes: `S/<F>_grad/...` (tf.gradients), `S/gradient_tape/...`.
GRAD_MARK = "_grad/"
TAPE_SCOPE = "gradient_tape"


@dataclass
class Backward:
    """The backward pass: its scopes (with how each was recognised) and nodes."""

    scopes: list[str]
    nodes: set[str]
    kinds: dict[str, str] = field(default_factory=dict)  # scope -> "autodiff" | "tape"
    notes: list[str] = field(default_factory=list)  # readings refused, and why
    constant: set[str] = field(default_factory=set)  # its float nodes computed from no forward value
    valued: set[str] = field(default_factory=set)  # the others: the gradients it computes
    types: OutputTypes | None = field(default=None, repr=False)  # output types, read once per analysis

    def exact(self, node: str) -> bool:
        """Whether `node` lies in a scope recognised from the forward ops it differentiates (not
        merely named `gradient_tape`)."""
        return node in self.nodes and any(
            node.startswith(s + "/") and self.kinds.get(s) == "autodiff" for s in self.scopes
        )


@dataclass
class Update:
    """A node that writes a variable from gradients: an optimizer apply op, a scatter, an assign,
    or a call whose function does (a v2 cond around apply ops)."""

    name: str
    op: str
    var: str
    state: list[str]
    sparse: bool
    grads: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    # For calls: the variable each gradient input position feeds, where the function says.
    targets: dict[int, str] = field(default_factory=dict)
    grad_targets: dict[str, str] = field(default_factory=dict)  # raw gradient -> variable


@dataclass
class Gradient:
    """A raw gradient tensor: dense, or the values or indices of a sparse (IndexedSlices) one."""

    tensor: str
    kind: str
    variable: str
    updates: list[str] = field(default_factory=list)
