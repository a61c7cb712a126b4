"""graphpass: rewrite a single-tower TF1 training GraphDef into a K-device data-parallel one.

The public API is imported lazily, so `import graphpass` (and the CLI's --help) does not pay for
importing TensorFlow until a function that needs it is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "rewrite": "api",
    "rewrite_with_report": "api",
    "rewrite_to_bytes": "api",
    "rewrite_to_buffer": "api",
    "Report": "api",
    "load_graph": "io",
    "save_graph": "io",
    "Pipeline": "pipeline",
    "GraphpassError": "errors",
    "InvalidGraphError": "errors",
    "ConfigError": "errors",
    "PassFailedError": "errors",
    "InternalError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphpass' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
