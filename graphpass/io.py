"""Reading and writing GraphDefs: binary .pb, text .pbtxt, MetaGraphDef .meta in; atomic writes out."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from google.protobuf import message, text_format
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from .errors import ConfigError, InvalidGraphError

GraphDef = graph_pb2.GraphDef
MAX_GRAPH_BYTES = 2**31 - 1
TEXT_SUFFIXES = (".pbtxt", ".pbtext", ".txt", ".prototxt")
BINARY_SUFFIXES = (".pb", ".graphdef")
META_SUFFIXES = (".meta",)


def _is_text(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def load_graph(path: str | os.PathLike) -> GraphDef:
    """Read a GraphDef from `path`: text if it ends in .pbtxt, a MetaGraphDef's graph if .meta, else binary.

    Raises:
        InvalidGraphError: the file is missing, empty, a SavedModel directory or not a GraphDef.
    """
    return read_graph(path)[0]


def read_graph(path: str | os.PathLike) -> tuple[GraphDef, bytes | None]:
    """load_graph(path), and the file's bytes if it is a binary GraphDef (else None)."""
    if "\0" in str(path):
        raise InvalidGraphError(f"{str(path)!r} is not a usable path (it contains a NUL byte)")
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except OSError as e:
        raise InvalidGraphError(f"{path}: cannot use this path ({e.strerror})") from None
    if is_dir:
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise InvalidGraphError(
                f"{path} is a SavedModel directory; graphpass reads a GraphDef: export one with "
                "tf.compat.v1.saved_model.load(sess, tags, dir) then "
                "tf.io.write_graph(sess.graph_def, '.', 'model.pb', as_text=False)"
            )
        raise InvalidGraphError(f"{path} is a directory, not a GraphDef file")
    try:
        if path.stat().st_size > MAX_GRAPH_BYTES:
            raise InvalidGraphError(
                f"{path} is {path.stat().st_size / 2**30:.1f} GiB: over protobuf's 2 GiB limit, so it "
                "cannot be a GraphDef (big weights belong in a checkpoint, not in the graph)"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidGraphError(f"{path}: no such file") from None
    except OSError as e:
        raise InvalidGraphError(f"{path}: cannot read ({e.strerror})") from None
    if not data.strip():
        raise InvalidGraphError(f"{path} is empty")
    suffix = path.suffix.lower()
    if suffix in META_SUFFIXES:
        meta = meta_graph_pb2.MetaGraphDef()
        try:
            meta.ParseFromString(data)
        except message.DecodeError:
            raise InvalidGraphError(f"{path} is not a binary MetaGraphDef (.meta)") from None
        graph_def = meta.graph_def
        data = None
    elif _is_text(path):
        graph_def = GraphDef()
        try:
            text_format.Parse(data.decode("utf-8"), graph_def)
        except (text_format.ParseError, UnicodeDecodeError) as e:
            line = str(e).splitlines()[0] if str(e) else "unreadable text"
            raise InvalidGraphError(f"{path} is not a text GraphDef (.pbtxt): {line}") from None
        data = None
    else:
        graph_def = GraphDef()
        try:
            graph_def.ParseFromString(data)
        except message.DecodeError:
            hint = " (it looks like text: name it .pbtxt)" if _looks_like_text(data) else ""
            raise InvalidGraphError(f"{path} is not a binary GraphDef (.pb){hint}") from None
    _check_parsed(graph_def, path)
    return graph_def, data


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    return b"node" in head and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _check_parsed(graph_def: GraphDef, path: Path) -> None:
    """Protobuf parsing accepts many byte strings; a usable GraphDef has named, typed nodes."""
    if not graph_def.node:
        raise InvalidGraphError(f"{path} holds no graph nodes (not a GraphDef, or an empty graph)")
    for node in graph_def.node:
        if not node.name or not node.op:
            raise InvalidGraphError(f"{path} is not a GraphDef: it has a node without a name or op")


def serialize(graph_def: GraphDef, text: bool = False) -> bytes:
    """Deterministic bytes for `graph_def` (attribute maps sorted), binary or text."""
    if text:
        return text_format.MessageToString(graph_def).encode("utf-8")
    try:
        return graph_def.SerializeToString(deterministic=True)
    except Exception as e:  # protobuf's own error type differs between implementations
        raise InvalidGraphError(f"cannot serialize the graph ({graph_def.ByteSize()} bytes): {e}") from None


def save_graph(graph_def: GraphDef | bytes | bytearray, path: str | os.PathLike) -> None:
    """Write `graph_def` (or its binary serialization) to `path` atomically (temp file, then
    rename); text if .pbtxt.

    Raises:
        ConfigError: the output directory does not exist or cannot be written.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError(f"output directory {directory} does not exist")
    if isinstance(graph_def, (bytes, bytearray)):
        data = serialize(GraphDef.FromString(graph_def), text=True) if _is_text(path) else graph_def
    else:
        data = serialize(graph_def, text=_is_text(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise ConfigError(f"cannot write to {directory}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _file_mode(path: Path) -> int:
    """The mode a newly created file gets (0666 less the umask), or the mode of the file replaced."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_tensorboard(graph_def: GraphDef, logdir: str | os.PathLike) -> Path:
    """Write `graph_def` as an event file in `logdir`, for TensorBoard's graph view.

    Raises:
        ConfigError: `logdir` cannot be created.
    """
    import tensorflow as tf

    logdir = Path(logdir)
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create TensorBoard log directory {logdir}: {e.strerror}") from None
    with tf.Graph().as_default():  # the v1 writer refuses to run eagerly
        writer = tf.compat.v1.summary.FileWriter(str(logdir))
        writer.add_graph(graph=None, graph_def=graph_def)
        writer.close()
    return logdir
