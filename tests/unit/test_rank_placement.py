"""Global ranks from a Ray placement group: node by node, so that tensor-parallel groups of
consecutive ranks stay on one node, whatever order Ray numbered the bundles in."""

from __future__ import annotations

import pytest

from mindspeed_rl.errors import UserError
from mindspeed_rl.workers.group import rank_placement

ADDRESSES = {"nodeB": "10.0.0.2", "nodeA": "10.0.0.1"}


def test_interleaved_bundles_are_ordered_node_by_node():
    # PACK gave bundles 0, 2 to one node and 1, 3 to the other: in bundle order, ranks 0 and 1
    # (a TP2 group) would sit on two nodes.
    bundles = ["nodeB", "nodeA", "nodeB", "nodeA"]
    placed = rank_placement(bundles, ADDRESSES, {"model.tp": 2, "rollout.infer_tp": 2})
    assert placed == [(1, 0), (3, 1), (0, 0), (2, 1)]
    nodes = [bundles[b] for b, _ in placed]
    assert nodes[0] == nodes[1] and nodes[2] == nodes[3]


def test_one_node_keeps_bundle_order():
    assert rank_placement(["n"] * 3, {}, {"model.tp": 3}) == [(0, 0), (1, 1), (2, 2)]


def test_a_group_that_must_span_nodes_is_refused():
    # 3 ranks on one node, 1 on the other: the second TP2 group straddles them.
    bundles = ["nodeA", "nodeA", "nodeA", "nodeB"]
    with pytest.raises(UserError, match=r"rollout.infer_tp=2 would span nodes: .*10.0.0.1: 3"):
        rank_placement(bundles, ADDRESSES, {"model.tp": 1, "rollout.infer_tp": 2})
    # Data parallelism alone may span nodes.
    assert len(rank_placement(bundles, ADDRESSES, {"model.tp": 1, "rollout.infer_tp": 1})) == 4


def test_two_nodes_on_one_host_are_kept_apart():
    bundles = ["y", "x", "y", "x"]
    placed = rank_placement(bundles, {"x": "127.0.0.1", "y": "127.0.0.1"}, {"model.tp": 2})
    assert [bundles[b] for b, _ in placed] == ["x", "x", "y", "y"]


def test_generation_ranks_are_placed_after_the_trainers_on_each_node():
    from mindspeed_rl.workers.group import role_placement

    # 4 training bundles (TP2) and 4 generation bundles (infer TP2), interleaved over 2 nodes.
    bundles = ["nodeB", "nodeA", "nodeB", "nodeA", "nodeA", "nodeB", "nodeA", "nodeB"]
    train, gen = role_placement(bundles, 4, ADDRESSES, tp=2, infer_tp=2)
    assert train == [(1, 0), (3, 1), (0, 0), (2, 1)]
    # Generation bundles 4..7, node by node, local indices after the node's 2 trainers.
    assert gen == [(4, 2), (6, 3), (5, 2), (7, 3)]
    assert [bundles[b] for b, _ in gen] == ["nodeA", "nodeA", "nodeB", "nodeB"]
    # Only the generation ranks form engines: 3 trainers on a node do not have to make whole
    # engines (here: infer TP3 on the other node's 3 generation ranks)...
    uneven = ["nodeA", "nodeA", "nodeA", "nodeB", "nodeB", "nodeB"]
    train, gen = role_placement(uneven, 3, ADDRESSES, tp=1, infer_tp=3)
    assert gen == [(3, 0), (4, 1), (5, 2)]
    # ...but an engine of generation ranks on two nodes is refused.
    with pytest.raises(UserError, match="rollout.infer_tp=2 would span nodes"):
        role_placement(["nodeA", "nodeA", "nodeB"], 1, ADDRESSES, tp=1, infer_tp=2)
