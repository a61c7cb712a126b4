"""The structural verifier catches each invariant it claims."""

from __future__ import annotations

import pytest

import graphpass
from graphpass.errors import InternalError
from graphpass.ir import verify
from graphpass.ir.graph import Graph
from graphpass.pipeline import Pipeline


def rewrite(load_fixture, rules="replicated-collective", model="mlp_sgd", k=2):
    if isinstance(rules, str) and rules.startswith("passes"):
        rules = Pipeline.from_yaml(rules)
    return graphpass.rewrite(load_fixture(model).graph_def, devices=k, rules=rules, device_type="CPU")


def node(gd, name):
    return next(n for n in gd.node if n.name == name)


def fails(gd, match):
    with pytest.raises(InternalError, match=match):
        verify.check(Graph(gd))


def test_a_good_rewrite_passes(load_fixture):
    verify.check(Graph(rewrite(load_fixture)))


def test_inputs_resolve(load_fixture):
    gd = rewrite(load_fixture)
    node(gd, "loss").input[0] = "nowhere"
    fails(gd, "'loss' reads 'nowhere', which does not exist")


def test_output_index_exists(load_fixture):
    gd = rewrite(load_fixture)
    node(gd, "loss").input[0] = "x/split:7"
    fails(gd, r"reads output 7 of 'x/split' \(it has 2\)")


def test_control_inputs_come_last(load_fixture):
    gd = rewrite(load_fixture)
    n = node(gd, "train")
    n.input.append("x")
    fails(gd, "data input after a control input")


def test_colocation_targets_exist(load_fixture):
    gd = rewrite(load_fixture)
    node(gd, "hidden/kernel/Assign").attr["_class"].list.s[0] = b"loc:@ghost"
    fails(gd, "colocated with missing node 'ghost'")


def test_no_cycles(load_fixture):
    gd = rewrite(load_fixture)
    node(gd, "x/split").input.insert(1, "loss")
    node(gd, "x/split").input.remove("x")
    fails(gd, "cycle")


def test_every_node_has_a_device(load_fixture):
    gd = rewrite(load_fixture)
    node(gd, "loss").device = ""
    fails(gd, "'loss' \\(Mean\\) has no device")


def test_collective_groups_are_complete(load_fixture):
    gd = rewrite(load_fixture, k=3)
    gone = "tower2/allreduce/hidden/bias/CollectiveReduceV2"
    node(gd, "tower2/reduced_grads/hidden/bias").input[0] = (
        "tower2/gradients/hidden/add_grad/tuple/control_dependency_1"
    )
    gd.node.remove(node(gd, gone))
    fails(gd, "has 2 ops for a group of 3")


def test_collective_ops_on_distinct_devices(load_fixture):
    gd = rewrite(load_fixture)
    node(gd, "tower1/allreduce/hidden/bias/CollectiveReduceV2").device = "/device:CPU:0"
    fails(gd, "two ops on one device")


def test_collective_group_sizes_agree(load_fixture):
    gd = rewrite(load_fixture)
    from tensorflow.python.framework import tensor_util

    node(gd, "tower1/allreduce/group_size").attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(3))
    fails(gd, "disagree on the group size")


def test_nccl_groups_are_complete(load_fixture):
    gd = graphpass.rewrite(load_fixture("mlp_sgd").graph_def, devices=2)
    node(gd, "tower1/allreduce/hidden/bias/NcclAllReduce").attr["num_devices"].i = 3
    fails(gd, "disagree on the group size")


PACKED = "passes:\n  - replicate\n  - pack-gradients: {num_split: 2, min_pack_elements: 1}\n  - allreduce: {algorithm: ring}\n"


def test_pack_and_unpack_sizes_agree(load_fixture):
    gd = rewrite(load_fixture, PACKED)
    verify.check(Graph(gd))
    from tensorflow.python.framework import tensor_util

    sizes = node(gd, "tower1/grad_packs/pack0/sizes")
    sizes.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto([1, 1]))
    fails(gd, "pack0 is cut into")


def test_unpacked_shapes_match_their_pieces(load_fixture):
    gd = rewrite(load_fixture, PACKED)
    from tensorflow.python.framework import tensor_util

    shape = node(gd, "tower0/grad_packs/pack0/unpack/grad0/shape")
    shape.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto([2, 2]))
    fails(gd, r"reshapes a 512-element piece of pack0 to \[2, 2\]")
