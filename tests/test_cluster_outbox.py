"""Tests for qakeapi.core.cluster.outbox and inbox: numbering, bounds, losses and duplicates (pure, no loop)."""

from __future__ import annotations

import pytest

from qakeapi import BroadcastError
from qakeapi.core.cluster.envelope import Kind
from qakeapi.core.cluster.inbox import Inbox
from qakeapi.core.cluster.outbox import PublishBuffer
from qakeapi.exceptions import ClusterUnavailableError


def outbox(**options: float) -> PublishBuffer:
    return PublishBuffer(
        "123456789012", "node-1", max_age=options.get("max_age", 5.0), max_size=int(options.get("max_size", 100))
    )


def test_client_messages_are_numbered_and_control_envelopes_repeat_the_last_number() -> None:
    box = outbox()
    box.put_control(Kind.HEARTBEAT, {"version": 0}, 0.0)
    box.put(Kind.ALL, {}, "a", 0.0)
    box.put(Kind.ROOM, {"room": "r"}, "b", 0.0)
    box.put_control(Kind.HEARTBEAT, {"version": 0}, 0.0)
    batch = box.batch(10)
    assert [(e.kind, e.seq, e.frame) for e in batch] == [
        (Kind.HEARTBEAT, 0, None),
        (Kind.ALL, 1, "a"),
        (Kind.ROOM, 2, "b"),
        (Kind.HEARTBEAT, 2, None),
    ]
    assert box.last_seq == 2


def test_a_retried_batch_keeps_its_numbers() -> None:
    box = outbox()
    box.put(Kind.ALL, {}, "a", 0.0)
    first = box.batch(10)
    assert box.failed(1.0) is True
    assert box.failed(1.5) is False  # already down
    box.put(Kind.ALL, {}, "b", 2.0)
    again = box.batch(10)
    assert [e.seq for e in again] == [1, 2]
    assert again[0] == first[0]
    box.sent(2)
    assert len(box) == 0
    assert box.published == 2
    assert box.recovered() is None  # nothing lost


def test_batch_takes_at_most_the_limit_in_order() -> None:
    box = outbox()
    for n in range(5):
        box.put(Kind.ALL, {}, str(n), 0.0)
    assert [e.frame for e in box.batch(3)] == ["0", "1", "2"]
    box.sent(3)
    assert [e.frame for e in box.batch(3)] == ["3", "4"]


def test_old_messages_expire_and_are_recorded_per_target() -> None:
    box = outbox(max_age=5.0)
    box.put(Kind.ROOM, {"room": "news"}, "a", 0.0)
    box.put(Kind.USER, {"user": "alice"}, "b", 1.0)
    box.put(Kind.CONNECTION, {"connection": "1234567890121"}, "c", 2.0)
    box.put_control(Kind.HEARTBEAT, {"version": 1}, 2.0)
    box.put(Kind.ALL, {}, "d", 9.0)
    assert box.expire(8.0) == 4
    assert box.dropped == 3  # the heartbeat is nobody's message
    assert [e.frame for e in box.batch(10)] == ["d"]
    loss = box.take_loss()
    assert loss is not None
    assert loss.as_data() == {
        "count": 3,
        "everyone": False,
        "rooms": ["news"],
        "users": ["alice"],
        "connections": ["1234567890121"],
    }
    assert loss.describe(box.max_age) == "3 waited longer than 5.0s for the backend"  # not "buffer full"
    assert box.take_loss() is None


def test_an_expired_message_that_had_a_number_leaves_a_skip() -> None:
    box = outbox(max_age=1.0)
    box.put(Kind.ALL, {}, "a", 0.0)
    box.put(Kind.ALL, {}, "b", 0.0)
    assert [e.seq for e in box.batch(1)] == [1]  # "a" was tried and failed
    box.failed(1.0)
    box.put(Kind.ALL, {}, "c", 1.5)
    box.expire(2.0)
    assert [(e.kind, e.seq, e.frame) for e in box.batch(10)] == [(Kind.SKIP, 1, None), (Kind.ALL, 2, "c")]
    assert box.expire(10.0) == 1  # "c"; the skip is kept, not counted again
    assert [(e.kind, e.seq) for e in box.batch(10)] == [(Kind.SKIP, 1), (Kind.SKIP, 2)]
    assert box.dropped == 3


def test_publishes_are_refused_once_the_backend_has_been_down_past_the_bound() -> None:
    box = outbox(max_age=5.0)
    box.failed(10.0)
    box.put(Kind.ALL, {}, "within", 14.0)
    with pytest.raises(ClusterUnavailableError, match=r"unreachable for 5\.5s \(bound 5\.0s\)") as raised:
        box.put(Kind.ROOM, {"room": "r"}, "past", 15.5)
    assert isinstance(raised.value, BroadcastError)
    assert box.put_control(Kind.HEARTBEAT, {"version": 0}, 15.5) is False
    assert box.put_control(Kind.HEARTBEAT, {"version": 0}, 15.5, force=True) is True
    loss = box.recovered()
    assert loss is not None
    assert (loss.count, loss.rooms) == (1, {"r"})
    assert box.down_since is None
    box.put(Kind.ALL, {}, "after", 16.0)


def test_a_full_buffer_refuses_and_counts() -> None:
    box = outbox(max_size=2)
    box.put(Kind.ALL, {}, "1", 0.0)
    box.put(Kind.ALL, {}, "2", 0.0)
    with pytest.raises(ClusterUnavailableError, match="buffer is full"):
        box.put(Kind.ALL, {}, "3", 0.0)
    assert box.dropped == 1
    loss = box.take_loss()
    assert loss is not None
    assert loss.everyone is True
    assert loss.describe(box.max_age) == "1 found the buffer full"


def test_a_loss_names_each_cause_with_its_count() -> None:
    box = outbox(max_age=5.0)
    box.put(Kind.ALL, {}, "old", 0.0)
    assert box.failed(1.0)  # the backend goes down
    box.expire(6.0)  # "old" waited too long
    with pytest.raises(ClusterUnavailableError, match="unreachable"):
        box.put(Kind.ALL, {}, "late", 7.0)  # down for 6 s > 5 s: refused
    loss = box.recovered()
    assert loss is not None
    assert loss.describe(box.max_age) == (
        "1 waited longer than 5.0s for the backend, 1 came after the backend had been down for over 5.0s"
    )


def test_too_many_named_targets_become_everyone() -> None:
    box = outbox(max_age=1.0, max_size=5000)
    for n in range(1001):
        box.put(Kind.USER, {"user": f"u{n}"}, "x", 0.0)
    box.expire(2.0)
    loss = box.take_loss()
    assert loss is not None
    assert (loss.count, loss.everyone, loss.users) == (1001, True, set())


def test_outbox_bounds_must_be_sane() -> None:
    with pytest.raises(ValueError, match="max_age must be positive"):
        PublishBuffer("1", "n", max_age=0)
    with pytest.raises(ValueError, match="max_size at least 1"):
        PublishBuffer("1", "n", max_size=0)


def test_inbox_drops_duplicates_and_counts_gaps() -> None:
    inbox = Inbox()
    assert inbox.accept("A", 7) == 0  # the first seen starts the count
    assert "A" in inbox
    assert inbox.accept("A", 8) == 0
    assert inbox.accept("A", 8) is None
    assert inbox.accept("A", 3) is None
    assert inbox.accept("A", 11) == 2
    assert (inbox.duplicates, inbox.gaps) == (2, 2)
    assert inbox.accept("B", 1) == 0  # publishers are independent


def test_inbox_check_notices_missing_messages_before_a_control_envelope() -> None:
    inbox = Inbox()
    assert inbox.check("A", 0) == 0
    assert inbox.accept("A", 1) == 0
    assert inbox.check("A", 1) == 0  # nothing after 1 was published
    assert inbox.check("A", 4) == 3  # 2, 3 and 4 never came
    assert inbox.accept("A", 5) == 0
    assert inbox.accept("A", 4) is None
    inbox.forget("A")
    assert "A" not in inbox
    assert inbox.accept("A", 99) == 0


def test_revocations_never_expire_while_messages_around_them_do() -> None:
    outbox = PublishBuffer("i", "n", max_age=1.0)
    outbox.put(Kind.ROOM, {"room": "r"}, "old", now=0.0)
    assert outbox.put_control(Kind.REVOKE, {"user": "alice", "reason": "x", "at": 1.0}, now=0.0, force=True)
    outbox.put(Kind.ALL, {}, "old too", now=0.5)
    assert outbox.expire(now=100.0) == 2
    [revocation] = outbox.batch(10)
    assert (revocation.kind, revocation.data["user"], revocation.seq) == (Kind.REVOKE, "alice", 0)
    assert outbox.loss.count == 2


def test_drained_tells_when_everything_buffered_up_to_a_mark_went_out_or_was_dropped() -> None:
    box = outbox(max_age=5.0)
    box.put(Kind.ALL, {}, "a", 0.0)
    box.put(Kind.ALL, {}, "b", 0.0)
    mark = box.enqueued
    box.put(Kind.ALL, {}, "c", 4.0)
    assert not box.drained(mark)
    box.batch(1)
    box.sent(1)  # "a" went out
    assert not box.drained(mark)
    box.expire(6.0)  # "b" (never handed to the backend) is dropped for its age
    assert box.drained(mark)
    assert not box.drained(box.enqueued)  # "c" still waits


def test_the_old_name_still_works_with_a_deprecation_warning() -> None:
    import qakeapi.core.cluster.outbox as module

    with pytest.warns(DeprecationWarning, match="Outbox moved to qakeapi.core.cluster.outbox.PublishBuffer"):
        assert module.Outbox is PublishBuffer
