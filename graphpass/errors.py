"""The error hierarchy: user errors (exit 2 in the CLI) and internal bugs (exit 1)."""

from __future__ import annotations


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped, so a message naming user text
    (a YAML key, a node name) stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


class GraphpassError(Exception):
    """Base class of every error graphpass raises on purpose; its message is always one line."""

    exit_code = 2

    def __init__(self, message: str = ""):
        super().__init__(one_line(message))


class InvalidGraphError(GraphpassError):
    """The input is not a GraphDef graphpass can rewrite (corrupt, inference-only, unsupported)."""


class ConfigError(GraphpassError):
    """Bad rules (YAML), options or device specification."""


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
