"""Build the large single-tower training graphs tools/bench.py measures, into build/bench/.

    python tools/make_big_fixtures.py                  # every graph below
    python tools/make_big_fixtures.py resnet50         # just one
    python tools/make_big_fixtures.py chain --chain-length 200000   # a shorter chain

resnet50 is tf_keras' ResNet-50 (real model code, ~7k nodes); mid (~20k nodes) and deep100k
(~100k nodes) are deep stacks of small dense layers on ref variables; chain is a million Identity
ops in a row between the input and the one trained variable's loss (`--chain-length`).
resnet50_k64_bare is what graphpass makes of resnet50 at K=64 without its manifest node: a graph
already replicated, fed back in, that a rewrite must refuse (graphpass's own, from this checkout).
Each graph gets a JSON sidecar naming its feeds, train op, loss and init op, and its trainable
variables with their shapes. Builds are deterministic: the same bytes on every run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import _dense, _xent  # noqa: E402  (the same layer code as the small fixtures)

tf1 = tf.compat.v1
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
SEED = 1234


def resnet50():
    """tf_keras ResNet-50 (resource variables), Momentum, global step; BatchNorm updates run with train."""
    import tf_keras

    tf_keras.utils.set_random_seed(SEED)  # Keras draws its initializers' seeds from Python's random
    images = tf1.placeholder(tf.float32, [None, 224, 224, 3], name="images")
    labels = tf1.placeholder(tf.int64, [None], name="labels")
    model = tf_keras.applications.ResNet50(
        weights=None, input_tensor=images, classes=1000, classifier_activation=None
    )
    loss = _xent(model.output, labels)
    updates = list(model.updates) + tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    step = tf1.train.get_or_create_global_step()
    with tf.control_dependencies(updates):
        train = tf1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step, name="train")
    feeds = {"images": ([None, 224, 224, 3], "float32", None), "labels": ([None], "int64", 1000)}
    return feeds, train, loss


def deep_stack(layers: int, width: int = 16, classes: int = 10):
    """`layers` tanh dense layers of `width` units on ref variables, Momentum, global step."""
    tf1.disable_resource_variables()
    x = tf1.placeholder(tf.float32, [None, width], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    h = x
    for i in range(layers):
        h = _dense(h, width, f"layer{i}", tf.nn.tanh)
    loss = _xent(_dense(h, classes, "logits"), y)
    step = tf1.train.get_or_create_global_step()
    train = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(loss, global_step=step, name="train")
    feeds = {"x": ([None, width], "float32", None), "y": ([None], "int64", classes)}
    return feeds, train, loss


CHAIN_LENGTH = 1_000_000  # nodes in the chain (--chain-length)


def chain():
    """x -> a chain of Identity ops -> sum(chain * w): one trained variable, plain SGD, global
    step. Built here with one link, named `chain`; `lengthen` makes it CHAIN_LENGTH links."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    h = tf.identity(x, name="chain")
    w = tf1.get_variable("w", [4], initializer=tf1.ones_initializer())
    loss = tf.reduce_sum(h * w, name="loss")
    step = tf1.train.get_or_create_global_step()
    train = tf1.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step, name="train")
    return {"x": ([None, 4], "float32", None)}, train, loss


def lengthen(graph_def, meta: dict):
    """`graph_def` with its one-link `chain` made CHAIN_LENGTH links: `chain/0` .. reading the
    input, the last one still named `chain`. Written as protobuf directly: building a million
    ops through TensorFlow's Python API takes minutes."""
    out = tf1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name != "chain":
            out.node.add().CopyFrom(node)
            continue
        prev = node.input[0]
        for i in range(CHAIN_LENGTH - 1):
            link = out.node.add(name=f"chain/{i}", op="Identity", input=[prev])
            link.attr["T"].CopyFrom(node.attr["T"])
            prev = link.name
        last = out.node.add()
        last.CopyFrom(node)
        last.input[0] = prev
    return out, meta


def rewritten_bare(graph_def, meta: dict):
    """What graphpass (this checkout's) makes of `graph_def` at K=64 (replicated-nccl, GPUs),
    without the manifest node that records its towers: an already replicated graph that a rewrite
    must refuse, by what it finds rather than by the manifest."""
    sys.path.insert(0, str(ROOT))
    import graphpass
    from graphpass import manifest

    data, _ = graphpass.rewrite_to_buffer(graph_def, devices=64, rules="replicated-nccl", device_type="GPU")
    rewritten = tf1.GraphDef.FromString(bytes(data))
    del data
    out = tf1.GraphDef()
    out.versions.CopyFrom(rewritten.versions)
    out.library.CopyFrom(rewritten.library)
    out.node.extend(n for n in rewritten.node if not manifest.is_manifest(n))
    return out, dict(meta, towers=64)


def towerish(graph_def, meta: dict):
    """`graph_def` as an export of multi-tower code leaves it: every node under a scope `tower/`
    (tf.import_graph_def's prefix), an unused NoOp `notes_tower` and a string constant naming
    `tower1/...`: the strings graphpass's own tower names are made of, which must change nothing."""
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="tower")
        tf1.no_op(name="notes_tower")
        tf1.constant("tower1/conv1_conv/kernel:0 on /job:tower1/task:0", name="tower_note")
    out = graph.as_graph_def()

    def under(name: str) -> str:
        return "tower/" + name

    meta = dict(meta)
    meta["feeds"] = {under(k): v for k, v in meta["feeds"].items()}
    for key in ("train_op", "loss", "init"):
        meta[key] = under(meta[key])
    meta["trainable"] = [(under(n), s) for n, s in meta["trainable"]]
    return out, meta


DERIVED = {
    "resnet50_tower": ("resnet50", towerish),
    "resnet50_k64_bare": ("resnet50", rewritten_bare),
}

MODELS = {
    "resnet50": resnet50,
    "mid": lambda: deep_stack(480),
    "deep100k": lambda: deep_stack(2430),
    "chain": chain,
}
FINISH = {"chain": lengthen}  # what a model's graph becomes after TensorFlow built it


def build(name: str):
    """(GraphDef, metadata) of model `name`, built in a fresh graph with a fixed seed."""
    tf1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        tf1.enable_resource_variables()
        tf1.set_random_seed(SEED)
        feeds, train, loss = MODELS[name]()
        init = tf1.global_variables_initializer()
        trainable = [(v.op.name, v.shape.as_list()) for v in tf1.trainable_variables()]
    meta = {
        "feeds": {k: {"shape": s, "dtype": d, "classes": c} for k, (s, d, c) in feeds.items()},
        "train_op": train.name,
        "loss": loss.name,
        "init": init.name,
        "trainable": trainable,
    }
    return graph.as_graph_def(), meta


def main(argv: list[str]) -> int:
    global CHAIN_LENGTH
    if "--chain-length" in argv:
        at = argv.index("--chain-length")
        CHAIN_LENGTH = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    known = [*MODELS, *DERIVED]
    names = argv or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown model {unknown[0]!r}; choose from {', '.join(known)}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    built: dict = {}
    for name in sorted(names, key=lambda n: n in DERIVED):  # the graphs others derive from first
        if name in DERIVED:
            base, derive = DERIVED[name]
            graph_def, meta = derive(*(built.get(base) or build(base)))
        else:
            graph_def, meta = built[name] = build(name)
            if name in FINISH:
                graph_def, meta = FINISH[name](graph_def, meta)
        meta["nodes"] = len(graph_def.node)
        (OUT / f"{name}.pb").write_bytes(graph_def.SerializeToString(deterministic=True))
        (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: {len(graph_def.node)} nodes, {len(meta['trainable'])} trainable -> {OUT / name}.pb")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
