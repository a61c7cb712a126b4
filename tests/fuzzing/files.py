"""Corrupt files: graph files (.pb, .pbtxt, .meta) with byte edits; load_graph raises
InvalidGraphError or returns a GraphDef, which the "file" task then rewrites."""

from __future__ import annotations

from hypothesis import strategies as st

from .harness import TASKS, Outcomes, check_rewrite, fixture_graph


def _file_bytes(fixture: str, fmt: str) -> bytes:
    from tensorflow.core.protobuf import meta_graph_pb2

    from graphpass import io

    gd = fixture_graph(fixture)
    if fmt == "text":
        return io.serialize(gd, text=True)
    if fmt == "meta":
        meta = meta_graph_pb2.MetaGraphDef()
        meta.graph_def.CopyFrom(gd)
        return meta.SerializeToString(deterministic=True)
    return io.serialize(gd)


def corrupt(data: bytes, edits) -> tuple[bytes, list[str]]:
    """`data` with byte edits [(kind, position, value), ...] applied."""
    done = []
    buf = bytearray(data)
    for kind, pos, value in edits:
        p = pos % (len(buf) + 1)
        if kind == "truncate":
            del buf[p:]
            done.append(f"truncate at {p}")
        elif kind == "flip" and buf:
            p %= len(buf)
            buf[p] ^= 1 << (value % 8)
            done.append(f"flip bit {value % 8} of byte {p}")
        elif kind == "set" and buf:
            p %= len(buf)
            buf[p] = value % 256
            done.append(f"byte {p} = {value % 256}")
        elif kind == "insert":
            chunk = bytes([(value * 37 + k) % 256 for k in range(1 + value % 7)])
            buf[p:p] = chunk
            done.append(f"insert {chunk!r} at {p}")
        elif kind == "delete":
            del buf[p : p + 1 + value % 16]
            done.append(f"delete {1 + value % 16} bytes at {p}")
        elif kind == "garbage":
            buf = bytearray(bytes([(value * 131 + k * 7) % 256 for k in range(value % 64)]))
            done.append(f"replace all with {len(buf)} garbage bytes (seed {value})")
    return bytes(buf), done


byte_edit_st = st.tuples(
    st.sampled_from(["truncate", "flip", "flip", "set", "insert", "delete", "garbage"]),
    st.integers(0, 2**20),
    st.integers(0, 255),
)


def task_file(o: Outcomes, reproducer: str, path: str, towers: int):
    """load_graph raises InvalidGraphError or loads; what loads is rewritten."""
    from graphpass import io
    from graphpass.errors import GraphpassError, InvalidGraphError

    try:
        gd = io.load_graph(path)
    except InvalidGraphError as e:
        o.error(e, reproducer)
        return
    except GraphpassError as e:
        o.fail("crash", e, reproducer, f"load_graph raised {type(e).__name__}, not InvalidGraphError: {e}")
        return
    except Exception as e:  # noqa: BLE001
        o.fail("crash", e, reproducer)
        return
    o.ok("loaded")
    then = f"{reproducer}, then rewrite(devices={towers}, rules='replicated-collective', device_type='CPU')"
    check_rewrite(o, then, gd, towers, "replicated-collective", "CPU")


TASKS["file"] = task_file
