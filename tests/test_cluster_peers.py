"""Tests for qakeapi.core.cluster.peers: liveness, ordered presence diffs and state sync (pure, a fake clock)."""

from __future__ import annotations

from qakeapi.core.cluster.peers import Peers
from qakeapi.core.presence import Presence, PresenceReason


def table(node_timeout: float = 5.0) -> Peers:
    return Peers(Presence(), node_timeout, sync_retry=2.0)


def test_a_new_instance_is_synced_before_its_diffs_apply() -> None:
    peers = table()
    peers.heard("A", "node-a", 0.0)
    assert peers.nodes() == {"A": "node-a"}
    assert peers.heartbeat("A", 3, 0.0) is True  # unknown version: ask for the state
    assert peers.heartbeat("A", 3, 0.5) is False  # asked already, within sync_retry
    diffs, resync = peers.diff("A", 4, [["lobby", "11", "alice"]], [], 0.6)
    assert (diffs, resync) == ([], False)  # not applied before the state; not asked again so soon
    diffs = peers.state("A", 4, [["lobby", "11", "alice"], ["side", "12", None]])
    assert [(d.room, [m.connection_id for m in d.joins], d.reason) for d in diffs] == [
        ("lobby", ["11"], PresenceReason.SYNC),
        ("side", ["12"], PresenceReason.SYNC),
    ]
    assert peers.heartbeat("A", 4, 1.0) is False  # in step
    diffs, resync = peers.diff("A", 5, [["lobby", "13", "bob"]], [["side", "12"]], 1.1)
    assert resync is False
    assert [(d.room, len(d.joins), len(d.leaves)) for d in diffs] == [("lobby", 1, 0), ("side", 0, 1)]
    assert peers.presence.user_ids("lobby") == {"alice", "bob"}
    assert peers.presence.members("lobby")["13"].node_id == "node-a"


def test_a_diff_out_of_step_asks_for_the_state_again() -> None:
    peers = table()
    peers.heard("A", "node-a", 0.0)
    peers.state("A", 1, [])
    diffs, resync = peers.diff("A", 3, [["x", "11", None]], [], 10.0)  # 2 went missing
    assert (diffs, resync) == ([], True)
    assert peers.presence.rooms() == frozenset()
    assert peers.want_sync("A", 10.5) is False
    assert peers.want_sync("A", 10.5, force=True) is True


def test_silent_instances_die_only_while_this_node_can_hear() -> None:
    peers = table(node_timeout=5.0)
    peers.heard("A", "node-a", 0.0)
    peers.heard("B", "node-b", 4.0)
    peers.state("A", 1, [["lobby", "11", "alice"]])
    assert peers.dead(6.0, None) == []  # we hear nobody: that says nothing about them
    assert peers.dead(6.0, 3.0) == []  # we hear again since 3.0: A has had less than 5 s
    assert [instance for instance, _ in peers.dead(8.5, 0.0)] == ["A"]
    diffs = peers.forget("A", PresenceReason.NODE_DOWN)
    assert [(d.room, [m.user_id for m in d.leaves], d.reason) for d in diffs] == [
        ("lobby", ["alice"], PresenceReason.NODE_DOWN)
    ]
    assert "A" not in peers
    assert peers.nodes() == {"B": "node-b"}
    peers.clear()
    assert peers.nodes() == {}
