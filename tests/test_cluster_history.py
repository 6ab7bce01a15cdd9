"""Per-room history and recovery (qakeapi.core.cluster.history), nodes in one process on a memory hub.

A node's client says ``{"join": room, "since": position?}`` (answered by the recovery outcome, or
``joined``) and ``{"say": text, "room": room}`` (a room broadcast). Redis itself (the scripts, a
Redis Cluster slot) is in ``tests/test_cluster_history_redis.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from qakeapi import Application, WebSocket, WebSocketHandler
from qakeapi.core.broadcast.history import HistoryAppend, HistoryEntry, HistoryRead
from qakeapi.core.broadcast.memory import MemoryBackend
from qakeapi.core.broadcast.redis import RedisBackend
from qakeapi.core.cluster.history import (
    HistoryPolicy,
    Position,
    history_keys,
    publication_frame,
)
from qakeapi.core.clustering import ClusteredManager
from qakeapi.testing import TestClient, WebSocketTestSession
from tests.redis_server import wait_until
from tests.test_clustering import FAST, CuttableBackend, quiet

# -- pure parts ------------------------------------------------------------------------------------


def test_positions_are_parsed_strictly() -> None:
    assert Position.parse({"epoch": "e", "offset": 3}) == Position("e", 3)
    bad: Any
    for bad in (None, [], {"epoch": 1, "offset": 3}, {"epoch": "e", "offset": -1}, {"epoch": "e", "offset": True}):
        with pytest.raises(ValueError, match="a position is"):
            Position.parse(bad)


def read(entries: list[tuple[int, str | None]], *, top: int, first: int | None, epoch: str | None = "e") -> HistoryRead:
    return HistoryRead(epoch, top, first, [HistoryEntry(o, d) for o, d in entries])


@pytest.mark.parametrize(
    ("history", "since", "expected"),
    [
        (read([(4, "d"), (5, "d")], top=5, first=2), Position("e", 3), (True, None)),
        (read([], top=5, first=2), Position("e", 5), (True, None)),  # nothing missed
        (read([(1, "d")], top=1, first=1), Position("e", 0), (True, None)),  # joined before the first
        (read([(4, "d")], top=4, first=4), Position("e", 2), (False, "the history no longer reaches back")),
        (read([(4, "d")], top=4, first=4), Position("x", 3), (False, "the history was reset")),
        (read([], top=4, first=1), Position("e", 9), (False, "the position is ahead")),
        (read([(3, None), (4, "d")], top=4, first=1), Position("e", 3), (False, "could not be numbered")),
        (read([], top=0, first=None, epoch=None), Position("e", 3), (False, "the room has no history")),
    ],
)
def test_recovery_is_all_or_nothing(history: HistoryRead, since: Position, expected: tuple[bool, str | None]) -> None:
    recovered, reason = history.recovery_from(since)
    assert recovered is expected[0]
    assert (reason is None) is (expected[1] is None)
    if expected[1] is not None:
        assert reason is not None
        assert expected[1] in reason


def test_history_keys_share_the_channel_s_cluster_slot() -> None:
    assert history_keys("qakeapi:broadcast", "lobby") == (
        "{qakeapi:broadcast}:history:lobby",
        "{qakeapi:broadcast}:history:lobby:meta",
    )
    assert history_keys("app{tag}x", "r")[0] == "{tag}:history:r"


def test_publication_frames_carry_room_epoch_offset_and_data() -> None:
    assert publication_frame('a"b', "e1", 7, '{"x":1}') == (
        '{"type":"publication","room":"a\\"b","epoch":"e1","offset":7,"data":{"x":1}}'
    )
    assert '"epoch":null,"offset":null' in publication_frame("r", None, None, "1")


def test_bad_policies_and_backends_without_history_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        HistoryPolicy(size=0)
    with pytest.raises(ValueError, match="ttl"):
        HistoryPolicy(ttl=0)
    with pytest.raises(ValueError, match="keeps no room history"):
        ClusteredManager(WebSocketHandler(), RedisBackend("redis://localhost:1"), "n", history=HistoryPolicy())


# -- nodes -----------------------------------------------------------------------------------------


class SlowReadBackend(CuttableBackend):
    """A memory backend whose history reads wait until ``release`` is set (to publish meanwhile)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reading = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def read_history(self, keys: tuple[str, str], since: int, limit: int) -> HistoryRead:
        result = await super().read_history(keys, since, limit)
        if self.release is not None:
            self.reading.set()
            await self.release.wait()
        return result


@dataclass
class Node:
    manager: ClusteredManager
    client: TestClient
    backend: SlowReadBackend

    async def connect(self, stack: AsyncExitStack) -> WebSocketTestSession:
        session = await stack.enter_async_context(self.client.websocket_connect("/ws", timeout=3))
        assert (await session.receive_json())["type"] == "welcome"
        return session


def make_node(hub: str, node_id: str, policy: HistoryPolicy | None, **options: Any) -> Node:
    backend = SlowReadBackend(hub)
    handler = WebSocketHandler()
    manager = ClusteredManager(handler, backend, node_id, history=policy, **{**FAST, **options})
    app = Application()

    @handler.on_connect
    async def welcome(websocket: WebSocket) -> None:
        await websocket.send_json({"type": "welcome"})

    @handler.on_message
    async def on_message(websocket: WebSocket, message: Any) -> None:
        if "join" in message:
            since = Position.parse(message["since"]) if "since" in message else None
            recovery = await manager.join(message["join"], websocket, since=since)
            answer = recovery.as_message(message["join"]) if recovery is not None else {"type": "joined"}
            await websocket.send_json(answer)
        elif "say" in message:
            room = manager.rooms.get(message["room"])
            assert room is not None
            await room.broadcast({"text": message["say"]}, exclude=websocket if message.get("quiet") else None)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await manager.handle_connection(websocket)

    return Node(manager, TestClient(app), backend)


@pytest_asyncio.fixture
async def make_nodes() -> AsyncIterator[Callable[..., list[Node]]]:
    made: list[Node] = []
    hub = uuid.uuid4().hex

    def factory(
        count: int = 2, policy: HistoryPolicy | None = None, *, history: bool = True, **options: Any
    ) -> list[Node]:
        chosen = (policy or HistoryPolicy()) if history else None
        nodes = [make_node(hub, f"node-{len(made) + n}", chosen, **options) for n in range(count)]
        made.extend(nodes)
        return nodes

    yield factory
    for node in made:
        await node.manager.close()


async def join(session: WebSocketTestSession, room: str, since: Position | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"join": room}
    if since is not None:
        message["since"] = {"epoch": since.epoch, "offset": since.offset}
    await session.send_json(message)
    answer = await session.receive_json()
    assert answer["type"] in ("joined", "recovery"), f"unexpected {answer} before the join's answer"
    return answer  # type: ignore[no-any-return]


async def publications(session: WebSocketTestSession, count: int, timeout: float | None = None) -> list[dict[str, Any]]:
    """Receive ``count`` messages, each a publication (``timeout``: per message, else the session's)."""
    received = [await session.receive_json(timeout=timeout) for _ in range(count)]
    assert [p["type"] for p in received] == ["publication"] * count, received
    return received


async def known(nodes: list[Node], room: str, members: int) -> None:
    for node in nodes:
        await wait_until(
            lambda node=node: len(node.manager.presence.connection_ids(room)) == members,  # type: ignore[misc]
            f"{node.manager.node_id} sees {members} members of {room}",
            timeout=3,
        )


@pytest.mark.asyncio
async def test_every_member_gets_the_publications_in_the_same_offset_order_exactly_once(
    make_nodes: Callable[..., list[Node]],
) -> None:
    a, b = make_nodes(2)
    async with AsyncExitStack() as stack:
        a1, b1, b2 = await a.connect(stack), await b.connect(stack), await b.connect(stack)
        for session in (a1, b1, b2):
            assert await join(session, "lobby") == {"type": "joined"}
        await known([a, b], "lobby", 3)
        for n in range(5):  # both nodes publish, interleaved
            await (a1 if n % 2 else b1).send_json({"say": f"m{n}", "room": "lobby"})
        got = [await publications(s, 5) for s in (a1, b1, b2)]
        assert got[0] == got[1] == got[2]  # the same order everywhere, the publisher's own members too
        assert [p["offset"] for p in got[0]] == [1, 2, 3, 4, 5]
        assert sorted(p["data"]["text"] for p in got[0]) == [f"m{n}" for n in range(5)]
        assert {p["epoch"] for p in got[0]} == {got[0][0]["epoch"]}
        assert {p["room"] for p in got[0]} == {"lobby"}
        await quiet(a1, b1, b2)


@pytest.mark.asyncio
async def test_a_client_that_comes_back_on_another_node_gets_exactly_what_it_missed(
    make_nodes: Callable[..., list[Node]],
) -> None:
    a, b = make_nodes(2)
    async with AsyncExitStack() as stack:
        sender = await a.connect(stack)
        await join(sender, "lobby")
        async with b.client.websocket_connect("/ws", timeout=3) as leaver:
            await leaver.receive_json()
            await join(leaver, "lobby")
            await known([a, b], "lobby", 2)
            for n in range(3):
                await sender.send_json({"say": f"before {n}", "room": "lobby"})
            seen = await publications(leaver, 3)
            last = Position(seen[-1]["epoch"], seen[-1]["offset"])
        for n in range(4):
            await sender.send_json({"say": f"missed {n}", "room": "lobby"})
        await publications(sender, 7)
        back = await a.connect(stack)  # on the other node
        await back.send_json({"join": "lobby", "since": {"epoch": last.epoch, "offset": last.offset}})
        replay = await publications(back, 4)
        assert [p["data"]["text"] for p in replay] == [f"missed {n}" for n in range(4)]
        assert [p["offset"] for p in replay] == [4, 5, 6, 7]
        assert await back.receive_json() == {
            "type": "recovery",
            "room": "lobby",
            "recovered": True,
            "replayed": 4,
            "epoch": last.epoch,
            "offset": 7,
            "reason": None,
        }
        await sender.send_json({"say": "live", "room": "lobby"})
        [live] = await publications(back, 1)
        assert (live["offset"], live["data"]) == (8, {"text": "live"})
        await quiet(back)


@pytest.mark.asyncio
async def test_past_the_retention_or_in_another_epoch_nothing_is_replayed(
    make_nodes: Callable[..., list[Node]],
) -> None:
    (a,) = make_nodes(1, HistoryPolicy(size=3))
    async with AsyncExitStack() as stack:
        sender = await a.connect(stack)
        await join(sender, "lobby")
        for n in range(6):
            await sender.send_json({"say": f"m{n}", "room": "lobby"})
        epoch = (await publications(sender, 6))[0]["epoch"]
        late = await a.connect(stack)
        answer = await join(late, "lobby", Position(epoch, 2))  # 3 is gone: only 4, 5, 6 are kept
        assert (answer["recovered"], answer["replayed"], answer["offset"]) == (False, 0, 6)
        assert "no longer reaches back" in answer["reason"]
        other = await a.connect(stack)
        answer = await join(other, "lobby", Position("not-this-epoch", 5))
        assert (answer["recovered"], answer["epoch"]) == (False, epoch)
        fine = await a.connect(stack)
        await fine.send_json({"join": "lobby", "since": {"epoch": epoch, "offset": 3}})  # 4 is kept: enough
        assert [p["offset"] for p in await publications(fine, 3)] == [4, 5, 6]
        assert (await fine.receive_json())["recovered"] is True
        await quiet(late, other)


@pytest.mark.asyncio
async def test_a_history_that_expired_starts_a_new_epoch(make_nodes: Callable[..., list[Node]]) -> None:
    (a,) = make_nodes(1, HistoryPolicy(ttl=0.2))
    async with AsyncExitStack() as stack:
        sender = await a.connect(stack)
        await join(sender, "lobby")
        await sender.send_json({"say": "old", "room": "lobby"})
        [old] = await publications(sender, 1)
        await asyncio.sleep(0.3)
        await sender.send_json({"say": "new", "room": "lobby"})
        [new] = await publications(sender, 1)
        assert new["epoch"] != old["epoch"]
        assert new["offset"] == 1
        back = await a.connect(stack)
        answer = await join(back, "lobby", Position(old["epoch"], old["offset"]))
        assert (answer["recovered"], answer["reason"]) == (False, "the history was reset (another epoch)")


@pytest.mark.asyncio
async def test_live_publications_during_a_recovery_follow_the_replay_without_duplicates(
    make_nodes: Callable[..., list[Node]],
) -> None:
    a, b = make_nodes(2)
    async with AsyncExitStack() as stack:
        sender = await a.connect(stack)
        await join(sender, "lobby")
        await sender.send_json({"say": "m1", "room": "lobby"})
        epoch = (await publications(sender, 1))[0]["epoch"]
        await sender.send_json({"say": "m2", "room": "lobby"})
        await publications(sender, 1)

        b.backend.release = asyncio.Event()
        back = await b.connect(stack)
        await back.send_json({"join": "lobby", "since": {"epoch": epoch, "offset": 1}})
        await asyncio.wait_for(b.backend.reading.wait(), 3)  # the history was read (up to 2); not answered yet
        for n in (3, 4):
            await sender.send_json({"say": f"m{n}", "room": "lobby"})
        await publications(sender, 2)
        await wait_until(
            lambda: b.manager._history is not None and b.manager._history._offsets.get("lobby", ("", 0))[1] == 4,
            "node 2 received 3 and 4",
        )
        b.backend.release.set()
        got = await publications(back, 3)
        assert [(p["offset"], p["data"]["text"]) for p in got] == [(2, "m2"), (3, "m3"), (4, "m4")]
        answer = await back.receive_json()
        assert (answer["type"], answer["recovered"], answer["replayed"]) == ("recovery", True, 1)
        await quiet(back)


@pytest.mark.asyncio
async def test_publications_the_backend_cannot_number_go_out_unnumbered_and_break_recovery_across_them(
    make_nodes: Callable[..., list[Node]], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_nodes(2, node_timeout=10)
    async with AsyncExitStack() as stack:
        sender, listener = await a.connect(stack), await b.connect(stack)
        for session in (sender, listener):
            await join(session, "lobby")
        await known([a, b], "lobby", 2)
        await sender.send_json({"say": "numbered", "room": "lobby"})
        [first] = await publications(sender, 1)
        await publications(listener, 1)

        a.backend.sever()
        await sender.send_json({"say": "unnumbered", "room": "lobby"})
        [local] = await publications(sender, 1)  # delivered here at once, without a number
        assert (local["offset"], local["epoch"], local["data"]) == (None, None, {"text": "unnumbered"})
        a.backend.restore()
        [remote] = await publications(listener, 1)  # through the publish buffer once the link is back
        assert remote == local
        await wait_until(
            lambda: a.manager._history is not None and not a.manager._history.unnumbered, "the gap is recorded"
        )
        assert sum("cannot number publications" in r.getMessage() for r in caplog.records) == 1

        late = await b.connect(stack)
        answer = await join(late, "lobby", Position(first["epoch"], first["offset"]))
        assert (answer["recovered"], answer["replayed"]) == (False, 0)
        assert "could not be numbered" in answer["reason"]
        await sender.send_json({"say": "numbered again", "room": "lobby"})
        [after] = await publications(sender, 1)
        assert after["offset"] == 2
        fine = await b.connect(stack)
        answer = await join(fine, "lobby", Position(after["epoch"], 2))  # after the gap: fine
        assert answer["recovered"] is True


@pytest.mark.asyncio
async def test_after_an_outage_new_publications_do_not_overtake_the_buffered_ones(
    make_nodes: Callable[..., list[Node]],
) -> None:
    a, b = make_nodes(2, node_timeout=10)
    async with AsyncExitStack() as stack:
        sender, listener = await a.connect(stack), await b.connect(stack)
        for session in (sender, listener):
            await join(session, "lobby")
        await known([a, b], "lobby", 2)
        a.backend.sever()
        for n in range(5):  # unnumbered, delivered here at once, buffered for node-2
            await sender.send_json({"say": f"during {n}", "room": "lobby"})
        await publications(sender, 5)
        await wait_until(lambda: a.manager.outbox.down_since is not None, "node-1 knows the link is down")
        a.backend.restore()
        for n in range(5):  # at once: the sender may still be waiting out its backoff
            await sender.send_json({"say": f"after {n}", "room": "lobby"})
        await publications(sender, 5)
        received = await publications(listener, 10, timeout=10)
        assert [p["data"]["text"] for p in received] == [f"during {n}" for n in range(5)] + [
            f"after {n}" for n in range(5)
        ]  # in the order they were said


@pytest.mark.asyncio
async def test_a_room_without_history_and_a_plain_join(make_nodes: Callable[..., list[Node]]) -> None:
    (a,) = make_nodes(1, HistoryPolicy(rooms=lambda room: room.startswith("h:")))
    async with AsyncExitStack() as stack:
        session = await a.connect(stack)
        answer = await join(session, "plain", Position("e", 1))
        assert (answer["recovered"], answer["reason"]) == (False, "the room keeps no history")
        await session.send_json({"say": "raw", "room": "plain"})
        assert await session.receive_json() == {"text": "raw"}  # a plain room sends the message as it is
        assert await join(session, "h:room") == {"type": "joined"}
        await session.send_json({"say": "numbered", "room": "h:room"})
        assert (await publications(session, 1))[0]["offset"] == 1
        room = a.manager.rooms.get("h:room")
        assert room is not None
        with pytest.raises(TypeError, match="not bytes"):
            await room.broadcast(b"\x00")


@pytest.mark.asyncio
async def test_a_node_without_a_history_policy_delivers_the_numbered_publications_of_others(
    make_nodes: Callable[..., list[Node]], caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = make_nodes(1)
    (b,) = make_nodes(1, history=False)  # a rolling upgrade: one node has the policy, one not yet
    async with AsyncExitStack() as stack:
        a1, b1 = await a.connect(stack), await b.connect(stack)
        assert await join(a1, "lobby") == {"type": "joined"}
        assert await join(b1, "lobby") == {"type": "joined"}
        await known([a, b], "lobby", 2)
        with caplog.at_level("WARNING", logger="qakeapi.clustering"):
            await a1.send_json({"say": "numbered", "room": "lobby"})
            (on_a,) = await publications(a1, 1)
            (on_b,) = await publications(b1, 1)
        assert on_b == on_a
        assert (on_b["offset"], on_b["data"]) == (1, {"text": "numbered"})
        assert not [r for r in caplog.records if "malformed" in r.getMessage()]
        await quiet(a1, b1)


@pytest.mark.asyncio
async def test_the_memory_backend_appends_a_repeated_publication_once() -> None:
    backend = MemoryBackend(uuid.uuid4().hex)
    keys = history_keys("c", "lobby")
    appended = [
        await backend.append_history(
            HistoryAppend("c", keys, '{"q":1', data, epoch="e", size=10, ttl=60, publication=publication)
        )
        for data, publication in (("1", ("i", 1)), ("1", ("i", 1)), ("2", ("i", 2)), ("3", None), ("4", None))
    ]
    assert appended == [("e", 1), ("e", 1), ("e", 2), ("e", 3), ("e", 4)]
    history = await backend.read_history(keys, 0, 100)
    assert [(e.offset, e.data) for e in history.entries] == [(1, "1"), (2, "2"), (3, "3"), (4, "4")]


def test_the_history_records_moved_to_the_broadcast_package_with_a_warning() -> None:
    import qakeapi.core.cluster.history as old

    for name in ("HistoryAppend", "HistoryEntry", "HistoryRead"):
        with pytest.warns(
            DeprecationWarning, match=f"cluster.history.{name} moved to qakeapi.core.broadcast.history.{name}"
        ):
            assert getattr(old, name) is getattr(__import__("qakeapi.core.broadcast.history", fromlist=[name]), name)
