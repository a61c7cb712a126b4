"""Pipelines: YAML rules -> validated pass instances, and running them over a graph."""

from __future__ import annotations

import os
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .context import RewriteContext
from .errors import ConfigError, GraphpassError, InternalError, PassFailedError, shorten, show
from .io import MAX_CONFIG_BYTES, read_bounded
from .ir import verify
from .passes import REGISTRY, Pass, PassResult

DEFAULT_RULES = "replicated-nccl"
MAX_RULES_BYTES = MAX_CONFIG_BYTES
MAX_YAML_DEPTH = 64  # a rules file needs 5
MAX_YAML_EXPANSION = 1 << 22  # nodes and scalar characters once aliases are expanded


def presets_dir() -> Path:
    """Where the shipped presets live: graphpass/rules once installed, rules/ in a checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "rules"
    return installed if installed.is_dir() else here.parent / "rules"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_description(name: str) -> str:
    """The preset's leading comment, which says when to use it."""
    lines = []
    for line in (presets_dir() / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines)


@dataclass
class Pipeline:
    """An ordered list of configured passes, with the file (or preset) it came from; `where` says
    where each pass is written (`file:line`), for messages.

    Raises:
        ConfigError: the passes are not in an order their `requires`, `provides` and `before`
            allow (see `check_order`).
    """

    passes: list[Pass]
    source: str = "<rules>"
    where: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.where) != len(self.passes):
            self.where = [f"{self.source}: pass {i + 1}" for i in range(len(self.passes))]
        check_order(self.passes, self.where, self.source)

    @classmethod
    def load(cls, rules: str | Path = DEFAULT_RULES) -> Pipeline:
        """A preset name from rules/ or a path to a YAML file.

        Raises:
            ConfigError: unknown preset, unreadable file, malformed YAML, unknown passes or
                options, wrong option types.
        """
        text_rules = str(rules)
        looks_like_path = Path(text_rules).suffix in (".yaml", ".yml") or "/" in text_rules
        exists = "\0" not in text_rules and os.path.lexists(text_rules) and not os.path.isdir(text_rules)
        if looks_like_path or exists:  # a file, or a device or FIFO (refused unread)
            data = read_bounded(text_rules, "rules file", MAX_RULES_BYTES)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(f"cannot read rules file {shorten(text_rules, 200)}: {e}") from None
            return cls.from_yaml(text, shorten(text_rules, 200))
        preset = presets_dir() / f"{text_rules}.yaml"
        if text_rules not in preset_names():
            raise ConfigError(
                f"unknown rules '{shorten(text_rules)}'; presets: {', '.join(preset_names())} "
                "(or give a path to a .yaml file)"
            )
        return cls.from_yaml(preset.read_text(), text_rules)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<rules>") -> Pipeline:
        """The pipeline a rules document describes. Composed with PyYAML's safe loader, bounded:
        at most 1 MiB, 64 levels of nesting, and aliases expanding to at most 4 Mi nodes and
        characters (an alias bomb is refused before anything is built from it)."""
        if len(text) > MAX_RULES_BYTES:
            raise ConfigError(f"{source}: the rules are over {MAX_RULES_BYTES >> 20} MiB")
        loader = None
        try:
            loader = _BoundedLoader(text)  # its reader checks the characters here
            root = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"{source}: the rules are nested too deeply") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            what = "refused" if isinstance(e, _Refused) else "malformed YAML"
            raise ConfigError(f"{where}: {what}: {shorten(problem, 200)}") from None
        finally:
            if loader is not None:
                loader.dispose()
        if root is None:
            raise ConfigError(f"{source}: the rules file is empty; it needs a 'passes:' list")
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(f"{_at(source, root)}: the rules must be a mapping with a 'passes:' list")
        top = {_scalar(source, k): (k, v) for k, v in root.value}
        unknown = sorted(set(top) - {"passes", "description"})
        if unknown:
            where = _at(source, top[unknown[0]][0])
            raise ConfigError(
                f"{where}: unknown key '{shorten(unknown[0])}'; valid keys: description, passes"
            )
        if "passes" not in top:
            raise ConfigError(f"{source}: the rules need a 'passes:' list")
        seq = top["passes"][1]
        if not isinstance(seq, yaml.SequenceNode) or not seq.value:
            raise ConfigError(f"{_at(source, seq)}: 'passes' must be a non-empty list of passes")
        passes = [_build_pass(source, item) for item in seq.value]
        return cls(passes, source, [_at(source, item) for item in seq.value])

    def run(self, ctx: RewriteContext, verify_each: bool = False) -> list[PassRun]:
        """Run every pass in order, re-raising failures with the pass's name.

        Raises:
            PassFailedError: a pass refused the graph or its options.
            ConfigError: the pipeline leaves gradients unreduced.
        """
        runs: list[PassRun] = []
        done: list[str] = []
        for step, p in enumerate(self.passes):
            ctx.progress.update(f"pass {p.name}", step, len(self.passes))
            start = time.perf_counter()
            try:
                result = p.run(ctx)
                if verify_each:
                    verify.check(ctx.graph, packs=ctx.packs)
            except InternalError as e:
                raise InternalError(f"pass '{p.name}': {e}") from e
            except PassFailedError:
                raise
            except GraphpassError as e:
                raise PassFailedError(p.name, str(e), tuple(done)) from None
            runs.append(PassRun(p, result, time.perf_counter() - start))
            done.append(p.name)
        ctx.progress.finish()
        if ctx.pending:
            raise ConfigError(
                f"rules {self.source} leave {len(ctx.pending)} gradients unreduced: add an "
                "'allreduce' pass after 'replicate'"
            )
        return runs


def check_order(passes: Sequence[Pass], where: Sequence[str], source: str = "<rules>") -> None:
    """Refuse passes in an order their declarations do not allow: each fact a pass `requires`
    must be provided by a pass before it; each fact is provided once (so `replicate`, which
    provides the towers, comes once); a fact a pass must run `before` is not provided yet.

    Args:
        passes: the pipeline's passes, in order.
        where: for each pass, where it is written (`file:line`), for messages.
        source: the rules' file or preset, for a message about the pipeline as a whole.
    Raises:
        ConfigError: naming the pass, where it is, and the pass it needs before (or after) it.
    """
    if not passes:
        starts = " or ".join(f"'{n}'" for n, cls in REGISTRY.items() if not cls.requires)
        raise ConfigError(f"{source}: a pipeline starts with the {starts} pass")
    provided: dict[str, int] = {}  # fact -> the index of the pass that provided it
    for i, p in enumerate(passes):
        for fact in p.requires:
            if fact not in provided:
                makers = " or ".join(f"'{n}'" for n, cls in REGISTRY.items() if fact in cls.provides)
                raise ConfigError(f"{where[i]}: '{p.name}' needs a {makers} pass before it (for the {fact})")
        for fact in p.before:
            if fact in provided:
                q = provided[fact]
                raise ConfigError(
                    f"{where[i]}: put '{p.name}' before '{passes[q].name}' ({where[q]}), which provides "
                    f"the {fact}"
                )
        for fact in p.provides:
            if fact in provided:
                q = provided[fact]
                if passes[q].name == p.name:
                    raise ConfigError(f"{where[i]}: '{p.name}' may appear only once (also at {where[q]})")
                raise ConfigError(
                    f"{where[i]}: '{p.name}' provides the {fact}, which '{passes[q].name}' ({where[q]}) "
                    "already provides"
                )
            provided[fact] = i


@dataclass
class PassRun:
    pass_: Pass
    result: PassResult
    seconds: float = field(default=0.0)


class _Refused(yaml.composer.ComposerError):
    """A well-formed YAML document beyond graphpass's bounds for a rules file."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested more than MAX_YAML_DEPTH deep and aliases
    whose expansion (nodes, plus the characters of scalars) passes MAX_YAML_EXPANSION, while it
    composes: each node's expanded size is summed from its children's, once."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its expanded size, once composed

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise _Refused(
                    None, None, f"alias *{shorten(event.anchor)} is inside its own anchor", event.start_mark
                )
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            size = 1 + len(node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        else:
            size = 1 + sum(self._sizes[id(v)] for v in node.value)
        if size > MAX_YAML_EXPANSION:
            raise _Refused(
                None,
                None,
                f"its aliases expand to over {MAX_YAML_EXPANSION >> 20} Mi nodes and characters (a bomb?)",
                node.start_mark,
            )
        self._sizes[id(node)] = size
        return node


def _at(source: str, node) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def _scalar(source: str, node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{_at(source, node)}: expected a name here")
    return node.value


def _value(node, source: str = "<rules>"):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{_at(source, node)}: {shorten(problem, 200)}") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as e:
        # PyYAML's constructors for explicit tags (!!int, !!float, !!timestamp) fail this way
        # on a value that does not fit the tag
        why = f" ({shorten(str(e).splitlines()[0], 200)})" if isinstance(e, ValueError) and str(e) else ""
        raise ConfigError(f"{_at(source, node)}: a value does not fit its explicit YAML tag{why}") from None
    finally:
        loader.dispose()


def _build_pass(source: str, item) -> Pass:
    if isinstance(item, yaml.ScalarNode):
        name, opts_node = item.value, None
    elif isinstance(item, yaml.MappingNode) and len(item.value) == 1:
        key, opts_node = item.value[0]
        name = _scalar(source, key)
    else:
        raise ConfigError(
            f"{_at(source, item)}: each pass is a name, or a name mapped to its options "
            "(e.g. '- allreduce: {algorithm: collective}')"
        )
    cls = REGISTRY.get(name)
    if cls is None:
        raise ConfigError(
            f"{_at(source, item)}: unknown pass '{shorten(name)}'; "
            f"valid passes: {', '.join(sorted(REGISTRY))}"
        )
    kwargs = {}
    if opts_node is not None and not (
        isinstance(opts_node, yaml.ScalarNode) and _value(opts_node, source) is None
    ):
        if not isinstance(opts_node, yaml.MappingNode):
            raise ConfigError(f"{_at(source, opts_node)}: the options of '{shorten(name)}' must be a mapping")
        options = {o.name: o for o in cls.options()}
        for k_node, v_node in opts_node.value:
            key = _scalar(source, k_node)
            opt = options.get(key)
            if opt is None:
                raise ConfigError(
                    f"{_at(source, k_node)}: pass '{name}' has no option '{shorten(key)}'; valid options: "
                    f"{', '.join(options)}"
                )
            kwargs[key] = _check_type(source, name, opt, v_node)
    try:
        return cls.from_options(kwargs)
    except ConfigError as e:
        raise ConfigError(f"{_at(source, item)}: {e}") from None


def _check_type(source: str, pass_name: str, opt, node):
    value = _value(node, source)
    where = f"{_at(source, node)}: pass '{pass_name}' option '{opt.name}'"
    if value is None and opt.optional:
        return None
    choices = opt.choices
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{where} is {show(value)}; expected one of {', '.join(map(str, choices))}")
        return value
    t = opt.type
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if args and typing.get_origin(t) is not list:
        t = args[0]
    if typing.get_origin(t) is list:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value) or not value:
            raise ConfigError(f"{where} is {show(value)}; expected a non-empty list of strings")
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(t)
    if ok is None:
        raise InternalError(f"option type {t} of pass {pass_name} is not supported by the YAML loader")
    if not ok:
        raise ConfigError(f"{where} is {show(value)}; expected {opt.type_name()}")
    return float(value) if t is float else value
