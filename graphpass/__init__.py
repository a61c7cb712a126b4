"""graphpass: rewrite a single-tower TF1 training GraphDef into a K-device data-parallel one."""

from __future__ import annotations

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .api import Report, rewrite, rewrite_with_report  # noqa: E402
from .errors import (  # noqa: E402
    ConfigError,
    GraphpassError,
    InternalError,
    InvalidGraphError,
    PassFailedError,
)
from .io import load_graph, save_graph  # noqa: E402
from .pipeline import Pipeline  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GraphpassError",
    "InternalError",
    "InvalidGraphError",
    "PassFailedError",
    "Pipeline",
    "Report",
    "load_graph",
    "rewrite",
    "rewrite_with_report",
    "save_graph",
]
