"""The error hierarchy: user errors (exit 2 in the CLI) and internal bugs (exit 1)."""

from __future__ import annotations

import reprlib

MAX_MESSAGE = 4000  # characters: a message naming a huge value (a 1 MiB YAML key) is cut in the middle

_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = _SHOW.maxset = 8
_SHOW.maxlevel = 3


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped, so a message naming user text
    (a YAML key, a node name) stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def shorten(text: str, limit: int = 80) -> str:
    """`text` on one line, cut to about `limit` characters (the middle elided) for a message; only
    what is shown is escaped, so a megabyte of user text costs nothing."""
    text = str(text)
    if len(text) <= limit:
        return one_line(text)
    half = limit // 2
    return f"{one_line(text[:half])}...{one_line(text[-half:])}"


def show(value) -> str:
    """A bounded repr of a user's value (a YAML list, a device name) for a message: long strings
    and containers are elided, and nothing is walked beyond what is shown."""
    return one_line(_SHOW.repr(value))


class GraphpassError(Exception):
    """Base class of every error graphpass raises on purpose; its message is always one line."""

    exit_code = 2

    def __init__(self, message: str = ""):
        super().__init__(shorten(message, MAX_MESSAGE))


class InvalidGraphError(GraphpassError):
    """The input is not a GraphDef graphpass can rewrite (corrupt, inference-only, unsupported)."""


class ConfigError(GraphpassError):
    """Bad rules (YAML), options or device specification."""


class FileError(ConfigError):
    """A file cannot be read or written where the user pointed graphpass (a full disk, missing
    permissions, a read-only file system, a closed pipe, a device where a file belongs)."""


class PassFailedError(GraphpassError):
    """A pass could not apply to this graph; the message names the pass and the node."""

    def __init__(self, pass_name: str, message: str, before: tuple[str, ...] = ()):
        self.pass_name = pass_name
        self.before = before
        ran = f" (after {', '.join(before)})" if before else ""
        super().__init__(f"pass '{pass_name}'{ran}: {message}")


class InternalError(GraphpassError):
    """An invariant graphpass itself should have kept was broken: a bug, not bad input."""

    exit_code = 1


def plural(n: int, word: str, words: str | None = None) -> str:
    """`n` and `word`, in the plural (`words`, else `word` + s) unless n is 1."""
    return f"{n} {word if n == 1 else (words or word + 's')}"
