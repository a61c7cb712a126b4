"""Device specifications: "8" with a device type, or an explicit list of device names."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from tensorflow.python.framework.device_spec import DeviceSpecV2

from . import opdefs
from .errors import ConfigError, shorten, show

DEVICE_TYPES = ("GPU", "CPU")
MAX_DEVICES = 4096  # more towers than any cluster has: a typo, not a plan


def canonical(device: str) -> str:
    """The canonical form of a device name: "gpu:1", "/GPU:1" and "/device:GPU:1" are
    "/device:GPU:1"; replica 0 is implied everywhere, and on one machine so are job localhost and
    task 0 ("/job:localhost/replica:0/task:0/device:CPU:0" is "/device:CPU:0")."""
    if not isinstance(device, str):
        raise ConfigError(f"device names must be strings, not {show(device)}")
    try:
        spec = DeviceSpecV2.from_string(device.strip())
    except (ValueError, TypeError) as e:
        raise ConfigError(f"'{shorten(device)}' is not a device name ({shorten(e, 200)})") from None
    if spec.device_type is None or spec.device_index is None:
        raise ConfigError(f"'{shorten(device)}' is not a full device name; expected e.g. /device:GPU:0")
    if spec.replica == 0:
        spec = spec.replace(replica=None)
    if spec.job in (None, "localhost") and spec.task in (None, 0):
        spec = spec.replace(job=None, task=None)
    return spec.to_string()


def parse_devices(
    spec: int | str | Sequence[str], device_type: str = "GPU", workers: int | None = None
) -> list[str]:
    """The tower devices described by `spec`.

    Args:
        spec: a count (8 or "8": devices 0..7 of `device_type`), a comma-separated string or a list
            of device names.
        device_type: GPU or CPU, used with a count.
        workers: with a count D, D devices on each of this many workers:
            /job:worker/task:{t}/device:{type}:{d}.
    Returns:
        Canonical device names, one per tower.
    Raises:
        ConfigError: a count below 1, an unknown device type, a malformed or repeated name.
    """
    if not isinstance(device_type, str) or device_type.upper() not in DEVICE_TYPES:
        raise ConfigError(f"device type {show(device_type)} is not one of {', '.join(DEVICE_TYPES)}")
    dtype = device_type.upper()
    if isinstance(spec, bool) or not isinstance(spec, (int, str, list, tuple)):
        raise ConfigError(f"devices must be a count or a list of device names, not {show(spec)}")
    if isinstance(spec, str) and re.fullmatch(r"\s*-?[0-9]+\s*", spec):
        spec = int(spec)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be at least 1 (got {workers})")
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"--devices must be at least 1 (got {spec})")
        if spec * (workers or 1) > MAX_DEVICES:
            raise ConfigError(
                f"{spec * (workers or 1)} devices is more than graphpass supports ({MAX_DEVICES})"
            )
        if workers is not None:
            return [f"/job:worker/task:{t}/device:{dtype}:{d}" for t in range(workers) for d in range(spec)]
        return [f"/device:{dtype}:{i}" for i in range(spec)]
    if workers is not None:
        raise ConfigError("--workers goes with a device count (--devices N), not a list of devices")
    items = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not all(isinstance(s, str) for s in items):
        raise ConfigError(f"device names must be strings, got {show(items)}")
    items = [s.strip() for s in items if s.strip()]
    if len(items) > MAX_DEVICES:
        raise ConfigError(f"{len(items)} devices is more than graphpass supports ({MAX_DEVICES})")
    if not items:
        raise ConfigError("no devices given")
    devices = [canonical(d) for d in items]
    seen: dict[str, str] = {}
    for given, d in zip(items, devices, strict=True):
        if d in seen:
            first = seen[d]
            also = f" (as '{shorten(first)}' and '{shorten(given)}')" if first != given else ""
            raise ConfigError(f"device {d} is listed twice{also}")
        seen[d] = given
    return devices


@functools.cache
def device_type(device: str) -> str:
    spec = DeviceSpecV2.from_string(device)
    return (spec.device_type or "").upper()


@functools.cache
def host_of(device: str) -> str:
    """The CPU of the machine that holds `device`: the device itself for a CPU (host work of a
    CPU tower stays on that tower's CPU)."""
    spec = DeviceSpecV2.from_string(device)
    if (spec.device_type or "").upper() == "CPU":
        return device
    return spec.replace(device_type="CPU", device_index=0).to_string()


def for_node(node, device: str) -> str:
    """`device`, or its host CPU when TensorFlow has no kernel for `node` on that device type."""
    dtype = device_type(device)
    if dtype == "CPU" or opdefs.has_kernel(node, dtype):
        return device
    return host_of(device)


def task_of(device: str) -> str:
    """The job/task part of a device name ("" on a single machine)."""
    spec = DeviceSpecV2.from_string(device)
    return spec.replace(device_type=None, device_index=None).to_string()


def load_cluster(path) -> dict[str, list[str]]:
    """A cluster spec file: JSON {"worker": ["host:port", ...], "ps": [...]} (TF_CONFIG's
    "cluster" part; a whole TF_CONFIG is accepted too).

    Raises:
        ConfigError: unreadable, not a regular file, over 1 MiB, not JSON, nested too deeply, or
            without a worker job.
    """
    import json

    from .io import MAX_CONFIG_BYTES, read_bounded

    data = read_bounded(path, "cluster spec", MAX_CONFIG_BYTES)
    try:
        data = json.loads(data)
    except RecursionError:
        raise ConfigError(
            f"cluster spec {shorten(path, 200)} is nested too deeply to be a cluster spec"
        ) from None
    except ValueError as e:  # bad JSON, or bytes in no Unicode encoding
        raise ConfigError(f"cluster spec {shorten(path, 200)} is not JSON: {shorten(e, 200)}") from None
    if isinstance(data, dict) and isinstance(data.get("cluster"), dict):
        data = data["cluster"]
    if not isinstance(data, dict) or not isinstance(data.get("worker"), list) or not data["worker"]:
        raise ConfigError(f'cluster spec {shorten(path, 200)} needs a non-empty "worker" list of host:port')
    for job, tasks in data.items():
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ConfigError(
                f"cluster spec {shorten(path, 200)}: job '{shorten(job)}' must be a list of host:port strings"
            )
    return data


def cluster_devices(cluster: dict[str, list[str]], per_worker: int, device_type: str = "GPU"):
    """(tower devices, parameter-server devices) of a cluster spec: `per_worker` devices on each
    worker task, and the CPU of each ps task."""
    towers = parse_devices(per_worker, device_type, workers=len(cluster["worker"]))
    ps = [f"/job:ps/task:{t}/device:CPU:0" for t in range(len(cluster.get("ps", [])))]
    return towers, ps
