"""Tests for qakeapi.core.presence: the replicated map of room members, without any I/O."""

from __future__ import annotations

from qakeapi.core.presence import Member, Presence, PresenceDiff, PresenceReason


def member(connection: str, user: str | None = None, instance: str = "111111111111") -> Member:
    return Member(connection, user, "node-1", instance)


def test_add_reports_a_join_once() -> None:
    presence = Presence()
    alice = member("1111111111111", "alice")
    assert presence.add("lobby", alice) == PresenceDiff("lobby", (alice,), (), PresenceReason.JOIN)
    assert presence.add("lobby", alice) is None  # already there: no diff
    assert presence.members("lobby") == {"1111111111111": alice}
    assert presence.connection_ids("lobby") == {"1111111111111"}
    assert presence.user_ids("lobby") == {"alice"}
    assert presence.rooms() == {"lobby"}


def test_user_ids_skip_anonymous_members_and_merge_sockets_of_one_user() -> None:
    presence = Presence()
    presence.add("lobby", member("11", "alice"))
    presence.add("lobby", member("12", "alice"))
    presence.add("lobby", member("13"))
    assert presence.user_ids("lobby") == {"alice"}
    assert presence.connection_ids("lobby") == {"11", "12", "13"}


def test_remove_reports_a_leave_and_drops_empty_rooms() -> None:
    presence = Presence()
    alice = member("11", "alice")
    presence.add("lobby", alice)
    assert presence.remove("lobby", "11") == PresenceDiff("lobby", (), (alice,), PresenceReason.LEAVE)
    assert presence.remove("lobby", "11") is None
    assert presence.rooms() == frozenset()
    assert presence.members("lobby") == {}
    assert presence.of_instance("111111111111") == []


def test_members_is_a_read_only_snapshot() -> None:
    presence = Presence()
    presence.add("lobby", member("11"))
    snapshot = presence.members("lobby")
    presence.add("lobby", member("12"))
    assert set(snapshot) == {"11"}


def test_drop_instance_removes_only_its_entries_with_one_diff_per_room() -> None:
    presence = Presence()
    a1, a2 = member("11", "a", "A"), member("12", "b", "A")
    b1 = member("21", "c", "B")
    presence.add("x", a1)
    presence.add("y", a1)
    presence.add("x", a2)
    presence.add("x", b1)
    diffs = presence.drop_instance("A", PresenceReason.NODE_DOWN)
    assert [(d.room, {m.connection_id for m in d.leaves}, d.joins, d.reason) for d in diffs] == [
        ("x", {"11", "12"}, (), PresenceReason.NODE_DOWN),
        ("y", {"11"}, (), PresenceReason.NODE_DOWN),
    ]
    assert presence.connection_ids("x") == {"21"}
    assert presence.rooms() == {"x"}
    assert presence.drop_instance("A", PresenceReason.NODE_DOWN) == []


def test_replace_instance_reports_only_what_changed() -> None:
    presence = Presence()
    stays, goes = member("11", "a", "A"), member("12", "b", "A")
    presence.add("x", stays)
    presence.add("x", goes)
    comes = member("13", "c", "A")
    diffs = presence.replace_instance("A", [("x", stays), ("z", comes)], PresenceReason.SYNC)
    assert diffs == [
        PresenceDiff("x", (), (goes,), PresenceReason.SYNC),
        PresenceDiff("z", (comes,), (), PresenceReason.SYNC),
    ]
    assert presence.of_instance("A") == [("x", stays), ("z", comes)]
    assert presence.replace_instance("A", [("x", stays), ("z", comes)], PresenceReason.SYNC) == []


def test_a_diff_as_a_message_names_each_member_by_connection_user_and_node() -> None:
    presence = Presence()
    alice, anonymous = member("11", "alice"), member("12")
    presence.add("lobby", anonymous)
    diff = presence.add("lobby", alice)
    assert diff is not None
    assert diff.as_message() == {
        "type": "presence",
        "room": "lobby",
        "joins": [{"connection": "11", "user": "alice", "node": "node-1"}],
        "leaves": [],
        "reason": "join",
    }
    left = presence.drop_instance("111111111111", PresenceReason.NODE_DOWN)
    assert [d.as_message()["leaves"] for d in left] == [
        [{"connection": "11", "user": "alice", "node": "node-1"}, {"connection": "12", "user": None, "node": "node-1"}]
    ]
    assert left[0].as_message()["reason"] == "node_down"
