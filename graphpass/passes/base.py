"""The Pass contract: a frozen dataclass with a kebab-case name, typed options and a run() method,
declaring what it needs from the passes before it (`requires`) and what it gives the ones after
(`provides`); the pipeline checks the order from these when it is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..context import RewriteContext
from ..options import Option, option, options_of


@dataclass
class PassResult:
    """What a pass did: whether it changed the graph and a one-line summary for people."""

    changed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses set `name` and `summary`, declare options as fields, and say
    how they are ordered:

    - `requires`: facts an earlier pass must have provided (every pass after `replicate` needs its
      "towers");
    - `provides`: facts this pass establishes; each is provided once, so a pass that provides
      something appears once;
    - `before`: facts that must not be provided yet when this pass runs (pack-gradients packs what
      allreduce then reduces, so it comes before the pass that provides "reduced-gradients").
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    before: ClassVar[tuple[str, ...]] = ()

    def run(self, ctx: RewriteContext) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[Option]:
        """The options a rules file may give this pass, in the order `graphpass rules` lists them."""
        return options_of(cls)

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> Pass:
        """The pass configured by a rules file's options (already checked against `options()`).

        Raises:
            ConfigError: options that do not go together.
        """
        return cls(**values)


__all__ = ["Option", "Pass", "PassResult", "option"]
