"""What the command shows its user: a rewrite's progress line (on a terminal) and summary, verify's report."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO


class Progress:
    """`update(stage, done, total)` redraws one status line at most every `interval` seconds."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = False, interval: float = 0.1):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self._last = 0.0
        self._width = 0

    @classmethod
    def for_terminal(cls, quiet: bool = False) -> Progress:
        return cls(sys.stderr, enabled=not quiet and sys.stderr.isatty())

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        text = f"graphpass: {stage} {done}/{total}"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def finish(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


SILENT = Progress()


def device_range(devices: list[str]) -> str:
    if len(devices) > 2:
        prefix = devices[0].rsplit(":", 1)[0]
        if all(d == f"{prefix}:{i}" for i, d in enumerate(devices)):
            return f"{prefix}:0..{len(devices) - 1}"
    return ", ".join(devices)


def print_summary(inp, out: str, r, events: Path | None = None, stream: TextIO | None = None) -> None:
    """The CLI's summary of a rewrite's Report `r`, flushed (so a closed pipe shows here)."""
    lines = [
        f"graphpass: {inp} -> {out}",
        f"  towers           {r.towers} on {device_range(r.devices)} ({r.mode}, rules {r.rules})",
        f"  variables        {r.variables} ({r.trainable} trainable; "
        + (
            f"{r.replicated_variables} with a replica per tower)"
            if r.mode == "replicated"
            else "one copy each)"
        ),
    ]
    lines += input_lines(r.inputs, r.towers)
    for run in r.passes:
        lines.append(f"  {run.pass_.name:<16} {run.result.summary} ({run.seconds * 1000:.0f} ms)")
    lines.append(f"  nodes            {r.nodes_in} -> {r.nodes_out}")
    lines.append(f"  time             {r.seconds:.2f} s")
    for note in r.notes:
        lines.append(f"  note             {note}")
    if events is not None:
        lines.append(f"  tensorboard      {events} (view it: tensorboard --logdir {events.parent})")
    stream = stream or sys.stdout
    print("\n".join(lines), file=stream, flush=True)


def input_lines(inputs, towers: int) -> list[str]:
    """The summary's lines on the inputs (a BatchInputs): which are split, which every tower
    reads whole, and why each was decided so."""
    lines = []
    for r in inputs.roles:
        name, how = r.name, f"split ({towers} shards)" if r.split else "whole to every tower"
        if r.sparse is not None:
            if r.name != r.sparse.indices:
                continue
            name = "/".join(r.sparse.members) + " (sparse)"
            how += ", by rows" if r.split else ""
        lines.append(f"  input            {name}: {how}; {r.why}")
    for name, op in inputs.drawn.items():
        lines.append(f"  input            {name} ({op}): each tower draws its own batch")
    return lines


def print_verify(v, ok: bool, rtol: float, as_json: bool = False) -> None:
    """`graphpass verify`'s report of a VerifyResult `v` (as JSON, or as lines)."""
    c = v.comparison
    if as_json:
        import json

        print(
            json.dumps(
                {
                    "ok": ok,
                    "towers": v.towers,
                    "executed": v.executed,
                    "reason": v.reason,
                    "problems": v.problems,
                    "steps": c.steps if c else 0,
                    "max_rel_diff": c.max_rel_diff if c else {},
                    "replica_mismatch": c.replica_mismatch if c else {},
                    "initial_mismatch": c.initial_mismatch if c else {},
                    "missing": c.missing if c else [],
                    "runs": v.runs,
                    "varying_between_runs": v.varying,
                    "replicas_drifting": v.drifting,
                },
                indent=2,
            )
        )
        return
    for p in v.problems:
        print(f"problem: {p}")
    if c is not None:
        rows = sorted(c.max_rel_diff.items(), key=lambda kv: -kv[1])
        print(f"{v.towers} towers on CPU, {c.steps} steps; largest relative difference per variable:")
        for name, d in rows[:15]:
            print(f"  {d:10.2e}  {name}{'   <-- above ' + format(rtol, 'g') if d > rtol else ''}")
        if len(rows) > 15:
            print(f"  ... {len(rows) - 15} more, all below {rows[15][1]:.2e}")
        replicas = (
            "replicas equal their canonical variables"
            if not c.replica_mismatch
            else (f"{len(c.replica_mismatch)} replicas differ, e.g. {next(iter(c.replica_mismatch))}")
        )
        print(f"  {replicas}")
        if c.initial_mismatch:
            shown = ", ".join(sorted(c.initial_mismatch)[:3]) + (
                ", ..." if len(c.initial_mismatch) > 3 else ""
            )
            print(
                f"  note: the rewrite's init drew other values for {len(c.initial_mismatch)} variables "
                f"({shown}; an unseeded graph): both ran from the original's"
            )
        for name in c.missing:
            print(f"  missing from the rewrite: {name}")
        if v.runs:
            if v.varying or v.drifting:
                worst = sorted({**v.varying, **v.drifting}.items(), key=lambda kv: -kv[1])[:3]
                shown = ", ".join(f"{n} ({d:.2e})" for n, d in worst)
                print(f"  {v.runs} runs from one state differ (a race in the rewritten step): {shown}")
            else:
                print(f"  {v.runs} runs from one state give identical results")
    elif v.reason:
        print(v.reason)
    if ok and not v.executed:
        print("graphpass: verify: structure checked; not run")
    else:
        print(f"graphpass: verify {'passed' if ok else 'FAILED'}")
