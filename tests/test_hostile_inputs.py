"""Hostile and oversized inputs, refusing systems and signals: one line, exit 2 (or 128 + N), fast, nothing left."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import graphpass
from graphpass import cli
from graphpass import io as gio
from graphpass.errors import ConfigError, InvalidGraphError
from graphpass.pipeline import Pipeline

from .conftest import FIXTURES, ROOT

MODEL = FIXTURES / "mlp_sgd.pb"
CPU = ["--devices", "2", "--device-type", "CPU", "--rules", "replicated-collective"]


def run_cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "graphpass", *map(str, args)], env=env, **kwargs)


def _in_process(capsys, *args):
    start = time.monotonic()
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, time.monotonic() - start


def _refused(capsys, tmp_path, *args, match, code=2, within=2.0):
    """`graphpass ARGS -o tmp/out.pb` fails with one line matching `match`, quickly, leaving only
    the files that were in tmp_path before."""
    before = sorted(os.listdir(tmp_path))
    got, _, err, took = _in_process(capsys, *args, "-o", tmp_path / "out.pb")
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(match, lines[0]), lines[0]
    assert len(lines[0]) < 600, "values in messages are cut short"
    assert took < within, f"took {took:.1f} s"
    assert sorted(os.listdir(tmp_path)) == before, "no output, temporary or event file is left"
    return lines[0]


# -- devices ----------------------------------------------------------------------------------


def test_a_device_named_twice_in_two_spellings_is_refused(capsys, tmp_path):
    line = _refused(
        capsys,
        tmp_path,
        "rewrite",
        MODEL,
        "--devices",
        "/job:localhost/replica:0/task:0/device:CPU:0,/cpu:0",
        match=r"device /device:CPU:0 is listed twice",
    )
    assert "'/job:localhost/replica:0/task:0/device:CPU:0'" in line and "'/cpu:0'" in line


def test_the_api_refuses_a_device_named_twice():
    with pytest.raises(ConfigError, match=r"listed twice \(as '/device:CPU:1' and 'cpu:1'\)"):
        graphpass.rewrite(MODEL, devices=["/device:CPU:1", "cpu:1"], rules="replicated-collective")


def test_every_message_is_one_bounded_line():
    e = ConfigError("a\nb" + "x" * 1_000_000)
    assert "\n" not in str(e) and len(str(e)) < 4100 and str(e).startswith("a\\nb")


# -- rules and cluster files ------------------------------------------------------------------


def _alias_bomb(levels=9, width=9) -> str:
    anchors = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        anchors.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "passes:\n  - replicate\n  - place-variables:\n      devices: [" + ", ".join(anchors) + "]\n"


def test_an_alias_bomb_is_refused_while_composing(capsys, tmp_path):
    rules = tmp_path / "bomb.yaml"
    rules.write_text(_alias_bomb())
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb.yaml:4: refused: its aliases expand to over 4 Mi"):
        Pipeline.load(rules)
    assert time.monotonic() - start < 1.0
    _refused(capsys, tmp_path, "rewrite", MODEL, *CPU[:2], "--rules", rules, match="an alias bomb|a bomb")


def test_small_aliases_still_work_and_a_recursive_one_is_refused():
    text = "passes:\n  - replicate: &r {mode: replicated}\n  - allreduce: {algorithm: collective}\n"
    assert Pipeline.from_yaml(text).passes[0].name == "replicate"
    with pytest.raises(ConfigError, match=r"refused: alias \*a is inside its own anchor"):
        Pipeline.from_yaml("passes: &a [replicate, *a]\n")


def test_long_and_multiline_values_are_cut_to_one_short_line():
    long_value = "x" * 200_000
    for value in (long_value, "two\\nlines " + long_value):
        with pytest.raises(ConfigError) as e:
            Pipeline.from_yaml(f'passes:\n  - replicate\n  - allreduce: {{algorithm: "{value}"}}\n')
        message = str(e.value)
        assert "\n" not in message and len(message) < 400 and "..." in message, message
    devices = [f"/gpu:{i}" for i in range(5000)]  # a list value printed in a message
    with pytest.raises(ConfigError) as e:
        Pipeline.from_yaml(
            "passes:\n  - replicate: {mode: parameter_server}\n  - place-variables:\n"
            f"      devices: {devices + [[1]]}\n  - allreduce: {{algorithm: colocate}}\n"
        )
    assert len(str(e.value)) < 400 and "..." in str(e.value)


@pytest.mark.parametrize("kind", ["rules", "cluster"])
def test_nesting_100000_levels_deep_is_refused(kind, capsys, tmp_path):
    path = tmp_path / ("deep.yaml" if kind == "rules" else "deep.json")
    depth = 100_000
    path.write_text(("passes: " if kind == "rules" else "") + "[" * depth + "]" * depth)
    flag = "--rules" if kind == "rules" else "--cluster"
    match = r"refused: nested more than 64 levels deep" if kind == "rules" else "nested too deeply"
    _refused(capsys, tmp_path, "rewrite", MODEL, *CPU[:2], flag, path, match=match)


@pytest.mark.parametrize("kind", ["rules", "cluster"])
def test_oversized_rules_and_cluster_files_are_refused_unread(kind, capsys, tmp_path):
    path = tmp_path / ("big.yaml" if kind == "rules" else "big.json")
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # sparse: reading it would take seconds and 3 GiB
    flag = "--rules" if kind == "rules" else "--cluster"
    _refused(
        capsys, tmp_path, "rewrite", MODEL, *CPU[:2], flag, path, match=r"3,221,225,472 bytes, over the limit"
    )


@pytest.mark.parametrize("kind", ["rules", "cluster"])
def test_devices_and_fifos_as_rules_or_cluster_files_are_refused(kind, capsys, tmp_path):
    flag = "--rules" if kind == "rules" else "--cluster"
    os.mkfifo(tmp_path / "fifo")
    _refused(capsys, tmp_path, "rewrite", MODEL, *CPU[:2], flag, tmp_path / "fifo", match="is a FIFO")
    _refused(capsys, tmp_path, "rewrite", MODEL, *CPU[:2], flag, "/dev/zero", match="is a character device")


# -- the input --------------------------------------------------------------------------------


def _huge(tmp_path):
    with open(tmp_path / "huge.pb", "wb") as f:
        f.truncate(2**31 + 10)  # sparse
    return tmp_path / "huge.pb"


INPUTS = {
    "a device": (lambda t: "/dev/zero", "is a character device, not a GraphDef file"),
    "a FIFO": (lambda t: os.mkfifo(t / "in.pb") or t / "in.pb", r"is a FIFO \(named pipe\)"),
    "a directory": (lambda t: t, "is a directory, not a GraphDef file"),
    "over 2 GiB": (_huge, "over protobuf's 2 GiB limit"),
    "stdin": (lambda t: "-", r"reading a graph from stdin \('-'\) is not supported"),
}


@pytest.mark.parametrize("case", list(INPUTS))
def test_inputs_that_are_no_file_are_refused_before_tensorflow_loads(case, tmp_path):
    make, match = INPUTS[case]
    start = time.monotonic()
    p = run_cli(
        "rewrite", make(tmp_path), "--devices", "2", "-o", tmp_path / "out.pb", stderr=subprocess.PIPE
    )
    err = p.communicate(timeout=60)[1].decode()
    assert p.returncode == 2 and len(err.strip().splitlines()) == 1 and re.search(match, err), err
    assert time.monotonic() - start < 3.0, "refused before TensorFlow's import (seconds), nothing read"
    assert not (tmp_path / "out.pb").exists()


def test_the_api_refuses_devices_quickly():
    start = time.monotonic()
    with pytest.raises(InvalidGraphError, match="is a character device"):
        graphpass.load_graph("/dev/zero")
    assert time.monotonic() - start < 0.5


# -- the output -------------------------------------------------------------------------------


def test_devices_and_fifos_are_refused_as_outputs(capsys, tmp_path):
    os.mkfifo(tmp_path / "fifo.pb")
    for out in ("/dev/null", "/dev/full", tmp_path / "fifo.pb"):
        code, _, err, took = _in_process(capsys, "rewrite", MODEL, *CPU, "-o", out)
        assert code == 2 and "not a file; to write to stdout give -o -" in err and took < 1.0, err
    assert os.listdir(tmp_path) == ["fifo.pb"]


def test_a_symlinked_output_writes_its_target(capsys, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link.pb").symlink_to(tmp_path / "real" / "model.pb")  # dangling until written
    code, *_ = _in_process(capsys, "rewrite", MODEL, *CPU, "-q", "-o", tmp_path / "link.pb")
    assert code == 0
    assert (tmp_path / "link.pb").is_symlink()
    assert len(graphpass.load_graph(tmp_path / "real" / "model.pb").node) > 200
    assert os.listdir(tmp_path / "real") == ["model.pb"]


@pytest.mark.parametrize("fmt", [None, "pbtxt"])
def test_dash_writes_the_graph_to_stdout_and_the_summary_to_stderr(fmt, capsysbinary, tmp_path):
    extra = ["--format", fmt] if fmt else []
    code = cli.main(["rewrite", str(MODEL), *CPU, "-o", "-", *extra])
    out, err = capsysbinary.readouterr()
    assert code == 0 and err.startswith(b"graphpass: ") and b" -> stdout" in err
    if fmt:
        assert out.startswith(b"node {")
    else:
        assert len(gio.GraphDef.FromString(out).node) > 200
    assert os.listdir(tmp_path) == []


def test_binary_output_to_a_terminal_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, _, err, _ = _in_process(capsys, "rewrite", MODEL, *CPU, "-o", "-")
    assert code == 2 and "refusing to write a binary GraphDef to a terminal" in err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO])
def test_write_errors_exit_2_with_the_reason_and_leave_nothing(code, capsys, tmp_path, monkeypatch):
    def fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(gio, "_write_all", fail)
    line = _refused(capsys, tmp_path, "rewrite", MODEL, *CPU, match=re.escape(os.strerror(code)))
    assert str(tmp_path / "out.pb") in line


def test_a_closed_pipe_as_output_is_an_error(capsys, tmp_path, monkeypatch):
    class Gone:
        def write(self, data):
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        def flush(self):
            pass

    class Stdout:
        buffer = Gone()

        def isatty(self):
            return False

        def flush(self):
            pass

        def write(self, text):
            pass

    monkeypatch.setattr(sys, "stdout", Stdout())
    code = cli.main(["rewrite", str(MODEL), *CPU, "-q", "-o", "-"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "graphpass: error: cannot write the graph to stdout: Broken pipe"


def test_tensorboard_says_where_it_wrote(capsys, tmp_path):
    code, out, err, _ = _in_process(
        capsys, "rewrite", MODEL, *CPU, "-o", tmp_path / "o.pb", "--tensorboard", tmp_path / "tb" / "run"
    )
    assert code == 0, err
    (events,) = (tmp_path / "tb" / "run").iterdir()
    assert events.name.startswith("events.out.tfevents.") and f"tensorboard      {events}" in out
    import tensorflow as tf

    graphs = [e.graph_def for e in tf.compat.v1.train.summary_iterator(str(events)) if e.graph_def]
    assert graphs == [(tmp_path / "o.pb").read_bytes()]


def test_a_failed_tensorboard_file_leaves_no_output(capsys, tmp_path, monkeypatch):
    def fail(path, records):
        open(path, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gio, "_write_records", fail)
    args = ("rewrite", MODEL, *CPU, "--tensorboard", tmp_path / "tb" / "run")
    _refused(capsys, tmp_path, *args, match=r"cannot write a TensorBoard event file in .*No space left")


def test_a_failed_summary_leaves_no_output(capsys, tmp_path, monkeypatch):
    from graphpass import progress

    def gone(*args):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(progress, "print_summary", gone)
    got, _, err, _ = _in_process(capsys, "rewrite", MODEL, *CPU, "-o", tmp_path / "o.pb")
    assert got == 141 and err == "" and os.listdir(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_write_removes_the_temporary(signum, capsys, tmp_path, monkeypatch):
    def interrupted(f, data):
        f.write(data[:100])
        os.kill(os.getpid(), signum)
        f.write(data[100:])

    monkeypatch.setattr(gio, "_write_all", interrupted)
    # a shell's background job inherits SIGINT ignored, which graphpass rightly keeps ignoring
    handler = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    before = signal.signal(signum, handler)
    try:
        code, _, err, _ = _in_process(capsys, "rewrite", MODEL, *CPU, "-o", tmp_path / "o.pb")
        assert signal.getsignal(signum) is handler, "the caller's handlers come back"
    finally:
        signal.signal(signum, before)
    assert code == 128 + signum and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def _big_graph(path):
    """A graph whose rewrite for 24 towers is about 100 MiB (a 4 MiB constant copied per tower)."""
    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 512], name="x")
        table = tf.constant(np.linspace(0, 1, 512 * 2048, dtype="float32").reshape(512, 2048), name="table")
        w = tf1.get_variable("w", [2048, 1], initializer=tf1.ones_initializer(), use_resource=True)
        tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.matmul(tf.matmul(x, table), w)))
        tf1.global_variables_initializer()
    graphpass.save_graph(graph.as_graph_def(), path)


@pytest.mark.slow
def test_sigterm_while_writing_a_big_rewrite_leaves_nothing(tmp_path):
    _big_graph(tmp_path / "big.pb")
    rules = tmp_path / "copy.yaml"
    rules.write_text(
        "passes:\n  - replicate: {share_constants_over: 100000000}\n  - allreduce: {algorithm: collective}\n"
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for _attempt in range(4):
        p = run_cli(
            "rewrite", tmp_path / "big.pb", "--devices", "24", "--device-type", "CPU", "--rules", rules,
            "-o", out_dir / "big.pb", "-q", stderr=subprocess.PIPE,
        )  # fmt: skip
        while p.poll() is None and not any(n.endswith(".tmp") for n in os.listdir(out_dir)):
            time.sleep(0.001)
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=60)[1].decode()
        if p.returncode == 143 and not (out_dir / "big.pb").exists():
            assert err.strip() == "graphpass: terminated by SIGTERM", err
            assert os.listdir(out_dir) == [], "the temporary file is removed"
            return
        for name in os.listdir(out_dir):  # finished before the signal: try again
            os.unlink(out_dir / name)
    pytest.fail("never caught the rewrite while it wrote its output")


@pytest.mark.slow
def test_ctrl_c_while_tensorflow_is_imported_exits_130_quietly(tmp_path):
    p = run_cli("rewrite", MODEL, "--devices", "2", "-o", tmp_path / "o.pb", stderr=subprocess.PIPE)
    time.sleep(1.0)  # past the path checks, inside `import tensorflow` (several seconds)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1].decode()
    assert p.returncode == 130 and err.strip() == "graphpass: interrupted", err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_closed_stdout_ends_quietly_with_141(tmp_path):
    p = run_cli("inspect", FIXTURES / "lstm_v1.pb", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before anything is written (graphpass inspect | head -0)
    err = p.communicate(timeout=60)[1].decode()
    assert p.returncode == 141 and err == "", err
