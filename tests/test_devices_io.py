"""Device specs and GraphDef I/O."""

from __future__ import annotations

import pytest

from graphpass import devices, io
from graphpass.errors import ConfigError, InvalidGraphError


def test_counts_and_lists():
    assert devices.parse_devices(3) == ["/device:GPU:0", "/device:GPU:1", "/device:GPU:2"]
    assert devices.parse_devices("2", "cpu") == ["/device:CPU:0", "/device:CPU:1"]
    assert devices.parse_devices("gpu:1, /device:GPU:3") == ["/device:GPU:1", "/device:GPU:3"]
    assert devices.host_of("/job:worker/task:1/device:GPU:3") == "/job:worker/task:1/device:CPU:0"


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
