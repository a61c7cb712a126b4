"""Device specs and GraphDef I/O."""

from __future__ import annotations

import json
import os
import re

import pytest

from graphpass import devices, io
from graphpass.errors import ConfigError, InvalidGraphError


def test_counts_and_lists():
    assert devices.parse_devices(3) == ["/device:GPU:0", "/device:GPU:1", "/device:GPU:2"]
    assert devices.parse_devices("2", "cpu") == ["/device:CPU:0", "/device:CPU:1"]
    assert devices.parse_devices("gpu:1, /device:GPU:3") == ["/device:GPU:1", "/device:GPU:3"]
    assert devices.host_of("/job:worker/task:1/device:GPU:3") == "/job:worker/task:1/device:CPU:0"


@pytest.mark.parametrize(
    "spellings",
    [
        ["/cpu:0", "/device:CPU:0", "cpu:0", "/CPU:0", "/job:localhost/replica:0/task:0/device:CPU:0"],
        ["/job:localhost/device:cpu:0", "/replica:0/device:CPU:0", "/task:0/device:CPU:0"],
        ["/job:worker/replica:0/task:1/device:GPU:3", "/job:worker/task:1/device:GPU:3"],
    ],
)
def test_spellings_of_one_device_are_one_device(spellings):
    names = {devices.canonical(s) for s in spellings}
    assert len(names) == 1
    for a in spellings:
        for b in spellings:
            if a != b:
                with pytest.raises(
                    ConfigError, match=rf"is listed twice \(as '{re.escape(a)}' and '{re.escape(b)}'\)"
                ):
                    devices.parse_devices([a, b])


def test_other_tasks_and_jobs_stay_distinct():
    spec = "/job:localhost/task:1/device:CPU:0,/device:CPU:0,/job:worker/task:0/device:CPU:0"
    assert devices.parse_devices(spec) == [
        "/job:localhost/task:1/device:CPU:0",
        "/device:CPU:0",
        "/job:worker/task:0/device:CPU:0",
    ]


@pytest.mark.parametrize(
    "spec,match",
    [
        (0, "at least 1"),
        ("gpu:0,gpu:0", "listed twice"),
        ("gpu", "not a full device name"),
        ("", "no devices"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        devices.parse_devices(spec)


def test_round_trip_and_atomic_write(tmp_path, load_fixture):
    gd = load_fixture("mlp_sgd").graph_def
    for name in ("a.pb", "a.pbtxt"):
        io.save_graph(gd, tmp_path / name)
        assert io.load_graph(tmp_path / name) == gd
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pb", "a.pbtxt"]


def test_written_files_get_the_usual_mode(tmp_path, load_fixture):
    """A new file gets 0666 less the umask (not mkstemp's private 0600); a replaced one keeps its mode."""
    import os

    gd = load_fixture("mlp_sgd").graph_def
    old = os.umask(0o022)
    try:
        io.save_graph(gd, tmp_path / "new.pb")
        (tmp_path / "kept.pb").write_bytes(b"earlier")
        os.chmod(tmp_path / "kept.pb", 0o640)
        io.save_graph(io.serialize(gd), tmp_path / "kept.pb")
    finally:
        os.umask(old)
    assert (tmp_path / "new.pb").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "kept.pb").stat().st_mode & 0o777 == 0o640
    assert io.load_graph(tmp_path / "kept.pb") == gd


def test_bad_files(tmp_path):
    (tmp_path / "t.pbtxt").write_text("this is { not pbtxt")
    with pytest.raises(InvalidGraphError, match="not a text GraphDef"):
        io.load_graph(tmp_path / "t.pbtxt")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(InvalidGraphError, match="SavedModel directory"):
        io.load_graph(tmp_path / "sm")
    with pytest.raises(ConfigError, match="does not exist"):
        io.save_graph(io.GraphDef(), tmp_path / "missing" / "x.pb")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"{worker: 1}", "is not JSON"),
        (json.dumps({"worker": ["h:1"], "x" * 5000: 1}).encode(), r"job 'x+\.\.\.x+' must be a list"),
        (json.dumps({"cluster": {"worker": ["h:1"], "ps": ["h:2"]}}).encode(), None),
    ],
)
def test_cluster_files(tmp_path, content, match):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    if match is None:
        assert devices.load_cluster(path) == {"worker": ["h:1"], "ps": ["h:2"]}
    else:
        with pytest.raises(ConfigError, match=match):
            devices.load_cluster(path)


def test_read_bounded_refuses_without_reading(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(10 << 30)
    with pytest.raises(ConfigError, match="big has 10,737,418,240 bytes, over the limit of 1.0 MiB"):
        io.read_bounded(big, "rules file", io.MAX_CONFIG_BYTES)
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block until a writer came
    for path, kind in (
        (tmp_path / "fifo", r"a FIFO \(named pipe\)"),
        ("/dev/zero", "a character device"),
        (tmp_path, "a directory"),
    ):
        with pytest.raises(ConfigError, match=f"is {kind}, not a file"):
            io.read_bounded(path, "rules file", io.MAX_CONFIG_BYTES)
    (tmp_path / "small").write_bytes(b"abc")
    assert io.read_bounded(tmp_path / "small", "", 3) == b"abc"
    with pytest.raises(InvalidGraphError, match="small has 3 bytes, over the limit of 2 B"):
        io.read_bounded(tmp_path / "small", "", 2, InvalidGraphError)


def test_save_graph_writes_a_symlinks_target_and_refuses_devices(tmp_path, load_fixture):
    gd = load_fixture("mlp_sgd").graph_def
    (tmp_path / "target.pb").write_bytes(b"earlier")
    (tmp_path / "link.pb").symlink_to("target.pb")
    io.save_graph(gd, tmp_path / "link.pb")
    assert (tmp_path / "link.pb").is_symlink() and io.load_graph(tmp_path / "target.pb") == gd
    with pytest.raises(ConfigError, match="output /dev/null is a character device, not a file"):
        io.save_graph(gd, "/dev/null")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pb", "target.pb"]
