"""The input's own device pins: kept where they name a target, mapped by kind where they do not."""

from __future__ import annotations

from dataclasses import dataclass

from ... import devices as devmod
from ...context import RewriteContext
from ...errors import ConfigError


@dataclass(frozen=True)
class Pins:
    """What the input's pins became: kept (a tower or parameter-server device, in any spelling),
    moved to tower 0's host (a CPU the targets do not name: host work), or cleared (an
    accelerator or a partial name the targets do not name), placed like unpinned nodes."""

    kept: int
    to_host: int
    cleared: int

    def note(self) -> str | None:
        total = self.kept + self.to_host + self.cleared
        if not total:
            return None
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.kept, "on target devices, kept"),
                (self.to_host, "on a CPU the devices do not name, moved to the towers' hosts"),
                (self.cleared, "on other devices, placed as if unpinned"),
            )
            if n
        ]
        return f"input device pins on {total} nodes: " + "; ".join(parts)


def normalize_pins(ctx: RewriteContext) -> Pins:
    """Rewrite every input pin to a device the output may use, before anything reads them.

    A pin on a target (tower or ps device) stays, spelled canonically. A CPU pin elsewhere
    (TF1 scripts' `tf.device("/cpu:0")`) means host work: it goes to tower 0's host, and the
    towers' copies of such nodes to their own host (for CPU towers, the tower's CPU itself). Any
    other pin (`/gpu:0` when the targets are CPUs or another job's devices, `/job:ps` alone) is
    dropped, and the node placed by the usual rules."""
    g, rw = ctx.graph, ctx.rewriter
    targets = set(ctx.devices) | set(ctx.ps_devices)
    host = devmod.host_of(ctx.devices[0])
    mapped: dict[str, tuple[str, str]] = {}  # pin -> (new device, what happened)
    counts = {"kept": 0, "to_host": 0, "cleared": 0}
    for node in list(g.parsed_nodes()):
        pin = node.device
        if not pin:
            continue
        done = mapped.get(pin)
        if done is None:
            done = mapped[pin] = _map(pin, targets, host)
        device, what = done
        counts[what] += 1
        if device != pin:
            rw.set_device(node.name, device)
    return Pins(**counts)


def _map(pin: str, targets: set[str], host: str) -> tuple[str, str]:
    try:
        device = devmod.canonical(pin)
    except ConfigError:  # a partial name (a job alone, no device index)
        return "", "cleared"
    if device in targets:
        return device, "kept"
    if devmod.device_type(device) == "CPU":
        return host, "to_host"
    return "", "cleared"
