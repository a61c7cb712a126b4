"""Typed options, shared by passes and all-reduce algorithms: each is a field of a frozen dataclass,
declared with `option()`, and described for the YAML loader and `graphpass rules` by `Option`."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


def option(default, help: str, choices: Callable[[], Iterable[Any]] | None = None):
    """A dataclass field with a default, a line of help and, for a `str` field whose values come
    from a registry, a function giving the values it accepts, asked each time the options are
    listed (a `Literal` type says its values itself)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


def options_of(cls: type) -> list[Option]:
    """The options a dataclass declares, in field order (fields without help are internal)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        choices = f.metadata.get("choices")
        allowed = tuple(choices()) if choices is not None else None
        out.append(Option(f.name, hints[f.name], default, f.metadata["help"], allowed))
    return out


@dataclass(frozen=True)
class Option:
    name: str
    type: Any
    default: Any
    help: str
    allowed: tuple[Any, ...] | None = None  # for a str option: the values a registry accepts

    @property
    def choices(self) -> tuple[Any, ...] | None:
        if self.allowed is not None:
            return self.allowed
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
    if typing.get_origin(t) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return t
