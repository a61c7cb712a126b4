"""Fuzzing names, not structure: the same training graphs under random prefixes, nested prefixes
and scopes renamed to look like autodiff's (`gradients`, `x_grad`, `gradient_tape`) or like
graphpass's own (`tower1`, `reduced_grads`). Names must not change what graphpass does: each case
either trains exactly like its single tower (execution equivalence on CPU devices) or is refused
with one line naming the problem; never exit 0 with a different step.

Derandomized and bounded (GRAPHPASS_FUZZ_EXAMPLES=N explores more)."""

from __future__ import annotations

import collections
import os
import re

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import graphpass

from .conftest import CPU_PRESETS, Fixture, applicable, assert_trains_like, prefixed

MODELS = ["mlp_sgd", "mlp_clip", "mlp_adam", "embedding_adagrad", "lstm_v1", "loss_scale_v1", "bert_adamw"]
SCOPES = [
    "import",
    "a/b",
    "gradients",
    "x_grad",
    "grads",
    "gradient_tape",
    "tower1",
    "reduced_grads",
    "train",
]
EXAMPLES = int(os.environ.get("GRAPHPASS_FUZZ_EXAMPLES", "0") or 0)


def _rename_scope(graph_def, old: str, new: str):
    """`graph_def` with top-level scope `old/` renamed `new/`, every reference included."""
    from graphpass.ir import names

    out = type(graph_def)()
    out.CopyFrom(graph_def)
    taken = {n.name for n in out.node}
    mapping = {n.name: new + n.name[len(old) :] for n in out.node if n.name.startswith(old + "/")}
    if set(mapping.values()) & (taken - set(mapping)):
        return None  # the new names would collide with existing ones
    for node in out.node:
        node.name = mapping.get(node.name, node.name)
        refs = []
        for ref in node.input:
            r = names.parse(ref)
            refs.append(str(names.Ref(mapping.get(r.node, r.node), r.index, r.control)))
        del node.input[:]
        node.input.extend(refs)
        if "_class" in node.attr:
            vals = [
                b"loc:@" + mapping.get(s[5:].decode(), s[5:].decode()).encode()
                for s in node.attr["_class"].list.s
            ]
            del node.attr["_class"].list.s[:]
            node.attr["_class"].list.s.extend(vals)
    return out


@st.composite
def renamings(draw):
    """A list of ("prefix", scope) and ("rename", old top-level scope index, new scope)."""
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            steps.append(("prefix", draw(st.sampled_from(SCOPES))))
        else:
            steps.append(("rename", draw(st.integers(0, 50)), draw(st.sampled_from(SCOPES))))
    return steps


def _apply(fx: Fixture, steps):
    """The fixture's graph after `steps` and what each original node name became, or None if a
    renaming does not apply."""
    gd = fx.graph_def
    now = {n.name: n.name for n in gd.node}
    for step in steps:
        if step[0] == "prefix":
            gd = prefixed(gd, step[1] + "/")
            now = {k: f"{step[1]}/{v}" for k, v in now.items()}
        else:
            scopes = sorted({n.name.split("/")[0] for n in gd.node if "/" in n.name})
            old = scopes[step[1] % len(scopes)]
            gd = _rename_scope(gd, old, step[2])
            if gd is None:
                return None
            now = {k: step[2] + v[len(old) :] if v.startswith(old + "/") else v for k, v in now.items()}
    return gd, now


@pytest.mark.slow
def test_renamed_graphs_train_exactly_or_are_refused():
    outcomes = {"trained": 0, "refused": 0, "skipped": 0}
    reasons: collections.Counter = collections.Counter()

    @settings(
        max_examples=EXAMPLES or 30,
        deadline=None,
        derandomize=not EXAMPLES,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        model=st.sampled_from(MODELS),
        steps=renamings(),
        rules=st.sampled_from(CPU_PRESETS),
        k=st.sampled_from([2, 3, 4]),
    )
    def run(model, steps, rules, k):
        if not applicable(model, rules, k):
            outcomes["skipped"] += 1
            return
        fx = Fixture(model)
        done = _apply(fx, steps)
        if done is None:
            outcomes["skipped"] += 1
            return
        gd, now = done
        try:
            out = graphpass.rewrite(gd, devices=k, rules=rules, device_type="CPU")
        except graphpass.GraphpassError as e:
            assert str(e) and "\n" not in str(e)
            outcomes["refused"] += 1
            reasons[re.sub(r"'[^']*'", "'...'", str(e))[:120]] += 1
            return
        case = Fixture.__new__(Fixture)
        case.graph_def = gd
        case.meta = {
            "feeds": {now[f]: s for f, s in fx.meta["feeds"].items()},
            "train_op": now[fx.train_op],
            "init": now[fx.init_op],
        }
        assert_trains_like(case, out, k, case.batches(2 * k, 3, seed=k))
        outcomes["trained"] += 1

    run()
    print(f"renamed graphs: {outcomes}")
    for reason, n in reasons.most_common():
        print(f"  refused x{n}: {reason}")
    assert outcomes["trained"] >= outcomes["refused"], outcomes
