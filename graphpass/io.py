"""Reading and writing GraphDefs: binary .pb, text .pbtxt, MetaGraphDef .meta in; atomic writes out."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, FileError, InvalidGraphError, shorten

# TensorFlow and protobuf are imported where they are used: the CLI checks its paths before paying
# for TensorFlow's import, so a path that cannot work is refused in a fraction of a second.
MAX_GRAPH_BYTES = 2**31 - 1
MAX_CONFIG_BYTES = 1 << 20  # rules and cluster files: a real one has a few hundred bytes
TEXT_SUFFIXES = (".pbtxt", ".pbtext", ".txt", ".prototxt")
META_SUFFIXES = (".meta",)
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
_KINDS.update({stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"})


def __getattr__(name: str):
    if name == "GraphDef":
        from tensorflow.core.framework import graph_pb2

        globals()["GraphDef"] = graph_pb2.GraphDef
        return graph_pb2.GraphDef
    raise AttributeError(f"module 'graphpass.io' has no attribute '{name}'")


def is_text(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_bounded(path: str | os.PathLike, what: str, limit: int, error: type = ConfigError) -> bytes:
    """The bytes of the regular file `path` ("{what} {path}" in messages), refused with `error`
    before reading when it is missing, not a regular file (a device, a FIFO: reading those never
    ends, or blocks) or over `limit` bytes; at most limit + 1 bytes are ever read."""
    shown = f"{what} {shorten(path, 200)}".strip()
    if "\0" in str(path):
        raise error(f"{shown} is not a usable path (it contains a NUL byte)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{shown}: no such file") from None
    except OSError as e:
        raise error(f"{shown}: cannot read ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{shown} is {_kind(st.st_mode)}, not a file")
        raise error(f"{shown} has {st.st_size:,} bytes, over the limit of {_size(limit)}")
    with open(fd, "rb") as f:
        try:
            data = f.read(st.st_size + 1)
            if len(data) > st.st_size:  # growing, or a /proc file that reports no size
                data += f.read(limit + 1 - len(data))
        except OSError as e:
            raise error(f"{shown}: cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise error(f"{shown} has over {_size(limit)}, the limit")
    return data


def check_graph_path(path: str | os.PathLike) -> None:
    """Refuse with InvalidGraphError, without opening it, a path that cannot hold a GraphDef: stdin
    ('-'), a missing file, a directory (a SavedModel's too), a device or FIFO, over protobuf's 2 GiB."""
    if str(path) == "-":
        raise InvalidGraphError("reading a graph from stdin ('-') is not supported; give a file's path")
    if "\0" in str(path):
        raise InvalidGraphError(
            f"{shorten(repr(str(path)), 200)} is not a usable path (it contains a NUL byte)"
        )
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidGraphError(f"{path}: no such file") from None
    except OSError as e:
        raise InvalidGraphError(f"{path}: cannot use this path ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode) and any((path / n).exists() for n in ("saved_model.pb", "saved_model.pbtxt")):
        raise InvalidGraphError(
            f"{path} is a SavedModel directory; graphpass reads a GraphDef: export one with "
            "tf.compat.v1.saved_model.load(sess, tags, dir) then "
            "tf.io.write_graph(sess.graph_def, '.', 'model.pb', as_text=False)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise InvalidGraphError(f"{path} is {_kind(st.st_mode)}, not a GraphDef file")
    if st.st_size > MAX_GRAPH_BYTES:
        raise InvalidGraphError(
            f"{path} is {st.st_size / 2**30:.1f} GiB: over protobuf's 2 GiB limit, so it "
            "cannot be a GraphDef (big weights belong in a checkpoint, not in the graph)"
        )


def load_graph(path: str | os.PathLike):
    """Read a GraphDef from `path`: text if it ends in .pbtxt, a MetaGraphDef's graph if .meta, else binary.

    Raises:
        InvalidGraphError: missing, empty, no regular file, over 2 GiB, a SavedModel, not a GraphDef.
    """
    return read_graph(path)[0]


def read_graph(path: str | os.PathLike):
    """load_graph(path), and the file's bytes if it is a binary GraphDef (else None)."""
    from google.protobuf import message, text_format
    from tensorflow.core.framework import graph_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    check_graph_path(path)
    path = Path(path)
    data = read_bounded(path, "", MAX_GRAPH_BYTES, InvalidGraphError)
    if not data.strip():
        raise InvalidGraphError(f"{path} is empty")
    graph_def = graph_pb2.GraphDef()
    if path.suffix.lower() in META_SUFFIXES:
        meta = meta_graph_pb2.MetaGraphDef()
        try:
            meta.ParseFromString(data)
        except message.DecodeError:
            raise InvalidGraphError(f"{path} is not a binary MetaGraphDef (.meta)") from None
        graph_def, data = meta.graph_def, None
    elif is_text(path):
        try:
            text_format.Parse(data.decode("utf-8"), graph_def)
        except (text_format.ParseError, UnicodeDecodeError) as e:
            line = str(e).splitlines()[0] if str(e) else "unreadable text"
            raise InvalidGraphError(f"{path} is not a text GraphDef (.pbtxt): {line}") from None
        data = None
    else:
        try:
            graph_def.ParseFromString(data)
        except message.DecodeError:
            hint = " (it looks like text: name it .pbtxt)" if _looks_like_text(data) else ""
            raise InvalidGraphError(f"{path} is not a binary GraphDef (.pb){hint}") from None
    if not graph_def.node:  # protobuf parsing accepts many byte strings
        raise InvalidGraphError(f"{path} holds no graph nodes (not a GraphDef, or an empty graph)")
    if any(not node.name or not node.op for node in graph_def.node):
        raise InvalidGraphError(f"{path} is not a GraphDef: it has a node without a name or op")
    return graph_def, data


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    return b"node" in head and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def serialize(graph_def, text: bool = False) -> bytes:
    """Deterministic bytes for `graph_def` (attribute maps sorted), binary or text."""
    if text:
        from google.protobuf import text_format

        return text_format.MessageToString(graph_def).encode("utf-8")
    try:
        return graph_def.SerializeToString(deterministic=True)
    except Exception as e:  # protobuf's own error type differs between implementations
        raise InvalidGraphError(f"cannot serialize the graph ({graph_def.ByteSize()} bytes): {e}") from None


@dataclass
class Output:
    """Where a graph goes: `path` (the file written, a symlink's target), or stdout when None."""

    path: Path | None
    text: bool
    shown: str  # the name the user gave


def resolve_output(
    path: str | os.PathLike, text: bool | None = None, inputs=(), allow_stdout=False
) -> Output:
    """Check, before any work, where a graph goes (`text`: its format, default from the suffix): a
    symlink's target; stdout for '-' (with `allow_stdout`) or a path naming stdout. Refused with
    ConfigError (FileError: what the system refuses): other devices, FIFOs, sockets, a missing or
    unwritable directory, any of the `inputs`."""
    shown = str(path)
    if "\0" in shown:
        raise ConfigError(f"output {shorten(repr(shown), 200)} is not a usable path (it contains a NUL byte)")
    text = is_text(shown) if text is None else text
    if allow_stdout and shown == "-":
        return _stdout_output(text)
    try:
        st = os.stat(shown)  # through symlinks (and /proc's links to pipes)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise FileError(f"output {shown}: cannot use this path ({e.strerror})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"output {shown} is a directory")
    with suppress(OSError):
        if allow_stdout and st is not None and os.path.samestat(st, os.fstat(1)):  # -o /dev/stdout
            return _stdout_output(text)
    if st is not None and not stat.S_ISREG(st.st_mode):
        hint = "; to write to stdout give -o -" if allow_stdout else ""
        raise ConfigError(f"output {shown} is {_kind(st.st_mode)}, not a file{hint}")
    target = Path(os.path.realpath(shown)) if os.path.islink(shown) else Path(shown)
    for inp in inputs:
        with suppress(OSError, ValueError):
            if st is not None and os.path.samefile(target, inp):
                raise ConfigError(f"output {shown} is the input file; choose another -o")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError(f"output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise FileError(f"cannot write to {directory}: {os.strerror(errno.EACCES)}")
    return Output(target, text, shown)


def _stdout_output(text: bool) -> Output:
    if sys.stdout is None or not hasattr(sys.stdout, "buffer"):
        raise FileError("stdout is closed; give an output file with -o")
    if not text and sys.stdout.isatty():
        raise ConfigError(
            "refusing to write a binary GraphDef to a terminal: redirect stdout or add --format pbtxt"
        )
    return Output(None, text, "stdout")


def abandon_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so exiting does not fail flushing it."""
    with suppress(AttributeError, OSError, ValueError):  # not a real file (pytest's capture), closed
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _write_all(f, data) -> None:
    f.write(data)


def _write_records(path: str, records: list[bytes]) -> None:
    """A TFRecord file (TensorBoard's event file format) of `records`."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


class Staged:
    """Files written to temporaries beside them and renamed into place by commit() (event files,
    then graphs, then stdout's graph); leaving the `with` block without commit() (an error, Ctrl-C,
    SIGTERM) removes every temporary, the event files renamed so far and the directories made."""

    def __init__(self):
        self._temps: list[tuple[Path, Path, bool]] = []  # (temporary, file, an event file)
        self._done: list[Path] = []
        self._made: list[Path] = []
        self._stdout: bytes | None = None
        self._committed = False

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc) -> None:
        if not self._committed:
            self.discard()

    def _temp(self, final: Path, events: bool) -> Path:
        tmp = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        self._temps.append((tmp, final, events))  # before it exists: a signal after the open finds it
        return tmp

    def add_graph(self, out: Output, graph) -> None:
        """Stage `graph` (a GraphDef, or its binary serialization) for `out`."""
        if out.text:
            from tensorflow.core.framework import graph_pb2

            if isinstance(graph, (bytes, bytearray)):
                graph = graph_pb2.GraphDef.FromString(bytes(graph))
            data = serialize(graph, text=True)
        else:
            data = graph if isinstance(graph, (bytes, bytearray)) else serialize(graph)
        if out.path is None:
            self._stdout = data
            return
        tmp = self._temp(out.path, events=False)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as e:
            raise FileError(f"cannot write to {out.path.parent}: {e.strerror}") from None
        try:
            with open(fd, "wb") as f:
                _write_all(f, data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _file_mode(out.path))  # a private temporary; the result is an ordinary file
        except OSError as e:
            raise FileError(f"cannot write {out.shown}: {e.strerror}") from None

    def add_tensorboard(self, logdir: str | os.PathLike, graph) -> Path:
        """Stage an event file in `logdir` (made if missing) holding `graph` (a GraphDef or its
        binary serialization) for TensorBoard's graph view; returns the event file's path."""
        import socket

        import tensorflow as tf
        from tensorflow.core.util import event_pb2

        logdir = Path(logdir)
        missing = [d for d in (logdir, *logdir.parents) if not d.exists()]
        try:
            logdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FileError(f"cannot create TensorBoard log directory {logdir}: {e.strerror}") from None
        finally:
            self._made = [d for d in missing if d.is_dir()]
        now = time.time()
        name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.graphpass"
        data = bytes(graph) if isinstance(graph, (bytes, bytearray)) else serialize(graph)
        records = [
            event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString(),
            event_pb2.Event(wall_time=now, step=0, graph_def=data).SerializeToString(),
        ]
        del data
        try:
            _write_records(str(self._temp(logdir / name, events=True)), records)
        except tf.errors.OpError as e:  # "<path>; <the system's reason>"
            why = e.message.split("; ")[-1]
            raise FileError(f"cannot write a TensorBoard event file in {logdir}: {why}") from None
        except OSError as e:
            raise FileError(f"cannot write a TensorBoard event file in {logdir}: {e.strerror}") from None
        return logdir / name

    def commit(self) -> None:
        try:
            for tmp, final, _ in sorted(self._temps, key=lambda t: not t[2]):
                try:
                    os.replace(tmp, final)
                except OSError as e:
                    raise FileError(f"cannot write {final}: {e.strerror}") from None
                self._done.append(final)
            if self._stdout is not None:
                try:
                    sys.stdout.flush()
                    sys.stdout.buffer.write(self._stdout)
                    sys.stdout.buffer.flush()
                except OSError as e:
                    abandon_stdout()
                    raise FileError(f"cannot write the graph to stdout: {e.strerror}") from None
        except BaseException:
            self.discard()
            raise
        self._committed = True

    def discard(self) -> None:
        for tmp, final, events in self._temps:
            if final not in self._done or events:  # a graph renamed into place stays: it is whole
                with suppress(OSError):
                    os.unlink(final if final in self._done else tmp)
        for d in self._made:
            with suppress(OSError):
                d.rmdir()  # only when still empty
        self._temps, self._done, self._made, self._stdout = [], [], [], None


def save_graph(graph_def, path: str | os.PathLike) -> None:
    """Write `graph_def` (or its binary serialization) to `path` (a symlink's target) atomically:
    a temporary file, then a rename; text if .pbtxt. Raises ConfigError for a missing directory, a
    directory or device as `path`; FileError (a ConfigError) when the system refuses (a full disk)."""
    with Staged() as staged:
        staged.add_graph(resolve_output(path), graph_def)
        staged.commit()


def _file_mode(path: Path) -> int:
    """The mode a newly created file gets (0666 less the umask), or the mode of the file replaced."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_tensorboard(graph_def, logdir: str | os.PathLike) -> Path:
    """Write `graph_def` (or its serialization) as an event file in `logdir` for TensorBoard's graph
    view; returns the file's path. Raises FileError when `logdir` or the file cannot be written."""
    with Staged() as staged:
        path = staged.add_tensorboard(logdir, graph_def)
        staged.commit()
    return path
