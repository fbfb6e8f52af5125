"""Who leads whom with node leaders on: the layout every rank computes alike."""

from mpibatch._dispatch import Tiers, decide, node_index


def test_nodes_come_from_host_names_or_the_pretend_node_size():
    assert node_index(["b", "b", "a", "a", "b"], None) == [0, 0, 1, 1, 0]
    assert node_index(["h"] * 5, 2) == [0, 0, 1, 1, 2]


def test_two_nodes_of_two_rank_one_alone_rank_two_leads_three():
    node = [0, 0, 1, 1]
    root = Tiers.make(node, 0, dedicated_root=False)
    assert root.top == [0, 1, 2]  # rank 1 is alone in node 0's group: a peer of its own
    assert root.slots == {0: 0, 1: 1} and root.grants == {2: [2]} and root.n_slots == 3
    assert Tiers.make(node, 1, False).role == "single"
    leader, member = Tiers.make(node, 2, False), Tiers.make(node, 3, False)
    assert (leader.role, member.role) == ("leader", "member")
    assert leader.top_color == 0 and member.top_color is None
    assert leader.group_color == member.group_color == 1 and leader.origins == [2, 3]


def test_one_slot_per_rank_that_runs_tasks():
    node = [0] * 4 + [1] * 4 + [2] * 4
    root = Tiers.make(node, 0, dedicated_root=True)
    assert root.top == [0, 1, 4, 8] and root.slots == {}
    assert root.grants == {1: [0, 1], 2: [2, 3, 4], 3: [5, 6, 7]} and root.n_slots == 8


def test_auto_turns_leaders_on_only_across_nodes_of_enough_ranks():
    assert decide("auto", [0] * 8) == (False, "auto: the run is on one node")
    on, why = decide("auto", [0, 0, 1, 1])
    assert not on and "2 ranks a node < 4" in why
    on, why = decide("auto", [0] * 4 + [1] * 4)
    assert on and why == "auto: 2 nodes of 4 ranks on average"
    assert decide("on", [0]) == (True, "requested with --leaders on")
    assert decide("off", [0, 1] * 8)[0] is False
