"""The Pass contract: a frozen dataclass with a kebab-case name, typed options and a run() method."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..context import RewriteContext


@dataclass
class PassResult:
    """What a pass did: whether it changed the graph and a one-line summary for people."""

    changed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses set `name` and `summary` and declare options as fields."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def run(self, ctx: RewriteContext) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[Option]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append(Option(f.name, hints[f.name], default, f.metadata.get("help", "")))
        return out


@dataclass(frozen=True)
class Option:
    name: str
    type: Any
    default: Any
    help: str

    @property
    def choices(self) -> tuple[Any, ...] | None:
        t = _strip_optional(self.type)
        if typing.get_origin(t) is typing.Literal:
            return typing.get_args(t)
        return None

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)

    def type_name(self) -> str:
        if self.choices:
            return " | ".join(str(c) for c in self.choices)
        t = _strip_optional(self.type)
        if typing.get_origin(t) is list:
            name = "list of " + getattr(typing.get_args(t)[0], "__name__", "str")
        else:
            name = getattr(t, "__name__", str(t))
        return f"{name} (optional)" if self.optional else name


def _strip_optional(t):
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if (
        typing.get_origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", None))
        and len(args) == 1
    ):
        return args[0]
    return t


def option(default, help: str):
    return field(default=default, metadata={"help": help})
