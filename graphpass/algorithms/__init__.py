"""All-reduce algorithms: the registry, name -> Algorithm class. Each builds one reduction's subgraph.

The registry is the one list of algorithms: the allreduce pass's `algorithm` choices, its
algorithm-specific options (each algorithm's `Options` dataclass), `graphpass rules`, the golden
cases and the tests all derive from it. Adding an algorithm is a module with its class, one line
here, and its test file (tests/test_algorithm_<name>.py).
"""

from __future__ import annotations

from ..errors import ConfigError
from ..options import Option, options_of
from .base import Algorithm, Builder
from .collective import Collective
from .colocate import Colocate
from .halving_doubling import HalvingDoubling
from .hierarchical import Hierarchical
from .naive import Naive
from .nccl import Nccl
from .ring import Ring

REGISTRY: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (Nccl, Collective, Hierarchical, Naive, Colocate, Ring, HalvingDoubling)
}


def names() -> tuple[str, ...]:
    """Every algorithm's name, in registry order (what `allreduce: {algorithm: ...}` accepts)."""
    return tuple(REGISTRY)


def get(name: str) -> type[Algorithm]:
    """The algorithm called `name`.

    Raises:
        ConfigError: no algorithm has that name (the message lists those that do).
    """
    cls = REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown all-reduce algorithm {name!r}; algorithms: {', '.join(names())}")
    return cls


def options(name: str) -> list[Option]:
    """The options algorithm `name` takes of its own (none for most)."""
    cls = get(name)
    return options_of(cls.Options) if cls.Options is not None else []


def all_options() -> dict[str, tuple[Option, tuple[str, ...]]]:
    """Every algorithm-specific option: name -> (the option, the algorithms that take it). Two
    algorithms may share an option name if they give it the same type."""
    out: dict[str, tuple[Option, tuple[str, ...]]] = {}
    for algo in names():
        for opt in options(algo):
            if opt.name in out:
                known, takers = out[opt.name]
                if known.type != opt.type:
                    raise TypeError(
                        f"algorithms {takers[0]} and {algo} both take option '{opt.name}', with "
                        f"different types ({known.type_name()}, {opt.type_name()})"
                    )
                out[opt.name] = (known, takers + (algo,))
            else:
                out[opt.name] = (opt, (algo,))
    return out


__all__ = ["REGISTRY", "Algorithm", "Builder", "all_options", "get", "names", "options"]
